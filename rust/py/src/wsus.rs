//! Python access to the WSUS metadata layer: update blobs read into plain dicts (snake_case keys mirroring
//! `UpdateMetadata`), update XML written from such a dict, and cabinets read and written. A bad blob, cabinet or dict
//! is bad input: ValueError naming the problem.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList};
use upmirror_core::Error;
use upmirror_core::wsus::{
    self, CabinetLimits, CabinetMember, CategoryType, DriverMetadata, LocalizedProperties, ParseLimits,
    PublicationState, UpdateFile, UpdateIdentity, UpdateMetadata,
};

use crate::errors::{IntoPyResult, to_py_err};

/// Reads one update blob: XmlUpdateBlob (`compressed=False`) or XmlUpdateBlobCompressed (`compressed=True`).
#[pyfunction]
fn decode_update_blob(py: Python<'_>, data: PyBackedBytes, compressed: bool) -> PyResult<Bound<'_, PyDict>> {
    let meta = py.detach(|| wsus::decode_update_blob(&data, compressed, &ParseLimits::default())).into_py()?;
    metadata_to_dict(py, &meta)
}

/// Reads many update blobs on every core; ValueError names the first bad one by its index.
#[pyfunction]
fn decode_update_blobs(py: Python<'_>, blobs: Vec<(PyBackedBytes, bool)>) -> PyResult<Bound<'_, PyList>> {
    let results = py.detach(|| wsus::decode_update_blobs(&blobs, &ParseLimits::default()));
    // Tens of thousands of new dicts and lists in a row start the cyclic collector over and over, each pass longer
    // than the last (a quarter of the time of 30,000 blobs): it is paused while they are made, as found.
    let gc = py.import("gc")?;
    let was_enabled: bool = gc.call_method0("isenabled")?.extract()?;
    if was_enabled {
        gc.call_method0("disable")?;
    }
    let dicts = results
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            let meta = result.map_err(|error| to_py_err(Error::InvalidInput(format!("blob {index}: {error}"))))?;
            metadata_to_dict(py, &meta)
        })
        .collect::<PyResult<Vec<_>>>();
    if was_enabled {
        gc.call_method0("enable")?;
    }
    PyList::new(py, dicts?)
}

/// Writes the update XML a WSUS server sends for a metadata dict (the keys `decode_update_blob` gives).
#[pyfunction]
fn encode_update_xml(metadata: &Bound<'_, PyDict>) -> PyResult<String> {
    wsus::write_update_xml(&metadata_from_dict(metadata)?).into_py()
}

/// The members of a cabinet as (name, bytes); ValueError for a bad or truncated cabinet or one that would unpack to
/// more than `max_size` bytes.
#[pyfunction]
fn read_cabinet(py: Python<'_>, data: PyBackedBytes, max_size: u64) -> PyResult<Vec<(String, Bound<'_, PyBytes>)>> {
    let members = py.detach(|| wsus::read_cabinet(&data, &CabinetLimits::with_max_size(max_size))).into_py()?;
    Ok(members.into_iter().map(|member| (member.name, PyBytes::new(py, &member.data))).collect())
}

/// A cabinet (one MSZIP folder) of the given (name, bytes) members.
#[pyfunction]
fn write_cabinet(py: Python<'_>, members: Vec<(String, Vec<u8>)>) -> PyResult<Bound<'_, PyBytes>> {
    let members: Vec<CabinetMember> = members.into_iter().map(|(name, data)| CabinetMember { name, data }).collect();
    let cabinet = py.detach(|| wsus::write_cabinet(&members)).into_py()?;
    Ok(PyBytes::new(py, &cabinet))
}

fn file_to_dict<'py>(py: Python<'py>, file: &UpdateFile) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "file_name"), &file.file_name)?;
    dict.set_item(intern!(py, "digest"), &file.digest)?;
    dict.set_item(intern!(py, "digest_algorithm"), &file.digest_algorithm)?;
    dict.set_item(intern!(py, "size"), file.size)?;
    dict.set_item(intern!(py, "modified"), &file.modified)?;
    dict.set_item(intern!(py, "patching_type"), &file.patching_type)?;
    dict.set_item(intern!(py, "sha256"), &file.sha256)?;
    dict.set_item(intern!(py, "languages"), &file.languages)?;
    dict.set_item(intern!(py, "encrypted"), file.encrypted)?;
    Ok(dict)
}

fn driver_to_dict<'py>(py: Python<'py>, driver: &DriverMetadata) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "hardware_id"), &driver.hardware_id)?;
    dict.set_item(intern!(py, "whql_driver_id"), &driver.whql_driver_id)?;
    dict.set_item(intern!(py, "manufacturer"), &driver.manufacturer)?;
    dict.set_item(intern!(py, "company"), &driver.company)?;
    dict.set_item(intern!(py, "provider"), &driver.provider)?;
    dict.set_item(intern!(py, "driver_ver_date"), &driver.driver_ver_date)?;
    dict.set_item(intern!(py, "driver_ver_version"), &driver.driver_ver_version)?;
    dict.set_item(intern!(py, "class"), &driver.class)?;
    dict.set_item(intern!(py, "distribution_computer_hardware_ids"), &driver.distribution_computer_hardware_ids)?;
    dict.set_item(intern!(py, "target_computer_hardware_ids"), &driver.target_computer_hardware_ids)?;
    Ok(dict)
}

fn metadata_to_dict<'py>(py: Python<'py>, meta: &UpdateMetadata) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "update_id"), &meta.update_id)?;
    dict.set_item(intern!(py, "revision_number"), meta.revision_number)?;
    dict.set_item(intern!(py, "update_type"), meta.update_type.as_str())?;
    dict.set_item(intern!(py, "default_language"), &meta.default_language)?;
    dict.set_item(intern!(py, "publication_state"), meta.publication_state.map(PublicationState::as_str))?;
    dict.set_item(intern!(py, "creation_date"), &meta.creation_date)?;
    dict.set_item(intern!(py, "explicitly_deployable"), meta.explicitly_deployable)?;
    dict.set_item(intern!(py, "is_public"), meta.is_public)?;
    dict.set_item(intern!(py, "handler"), &meta.handler)?;
    dict.set_item(intern!(py, "eula_id"), &meta.eula_id)?;
    dict.set_item(intern!(py, "kb_article_id"), &meta.kb_article_id)?;
    dict.set_item(intern!(py, "support_url"), &meta.support_url)?;
    dict.set_item(intern!(py, "more_info_url"), &meta.more_info_url)?;
    dict.set_item(intern!(py, "msrc_severity"), &meta.msrc_severity)?;
    dict.set_item(intern!(py, "security_bulletin_id"), &meta.security_bulletin_id)?;
    dict.set_item(intern!(py, "languages"), &meta.languages)?;
    let localized = PyList::empty(py);
    for properties in &meta.localized_properties {
        let item = PyDict::new(py);
        item.set_item(intern!(py, "language"), &properties.language)?;
        item.set_item(intern!(py, "title"), &properties.title)?;
        item.set_item(intern!(py, "description"), &properties.description)?;
        localized.append(item)?;
    }
    dict.set_item(intern!(py, "localized_properties"), localized)?;
    dict.set_item(intern!(py, "category_type"), meta.category_type.map(CategoryType::as_str))?;
    dict.set_item(intern!(py, "parent_category"), meta.parent_category())?;
    dict.set_item(intern!(py, "prerequisites"), &meta.prerequisites)?;
    dict.set_item(intern!(py, "prerequisite_groups"), &meta.prerequisite_groups)?;
    dict.set_item(intern!(py, "category_groups"), &meta.category_groups)?;
    let bundled: Vec<(&str, u32)> =
        meta.bundled_updates.iter().map(|b| (b.update_id.as_str(), b.revision_number)).collect();
    dict.set_item(intern!(py, "bundled_updates"), bundled)?;
    dict.set_item(intern!(py, "superseded_updates"), &meta.superseded_updates)?;
    let files = meta.files.iter().map(|file| file_to_dict(py, file)).collect::<PyResult<Vec<_>>>()?;
    dict.set_item(intern!(py, "files"), files)?;
    let eula_files = meta.eula_files.iter().map(|file| file_to_dict(py, file)).collect::<PyResult<Vec<_>>>()?;
    dict.set_item(intern!(py, "eula_files"), eula_files)?;
    dict.set_item(intern!(py, "handler_data_type"), &meta.handler_data_type)?;
    let drivers = meta.drivers.iter().map(|driver| driver_to_dict(py, driver)).collect::<PyResult<Vec<_>>>()?;
    dict.set_item(intern!(py, "drivers"), drivers)?;
    Ok(dict)
}

/// The keys of one kind of dict, read with a check that none is unknown (a misspelt key would be lost silently).
struct Fields<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
    what: &'static str,
}

impl<'py> Fields<'_, 'py> {
    fn new<'a>(dict: &'a Bound<'py, PyDict>, what: &'static str, known: &[&str]) -> PyResult<Fields<'a, 'py>> {
        for key in dict.keys() {
            let key: String = key.extract()?;
            if !known.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!("{what}: unknown key {key:?}")));
            }
        }
        Ok(Fields { dict, what })
    }

    /// A key that may be missing or None.
    fn optional<T: FromPyObjectOwned<'py>>(&self, key: &str) -> PyResult<Option<T>> {
        match self.dict.get_item(key)? {
            Some(value) if !value.is_none() => value.extract::<T>().map(Some).map_err(|error| {
                let error: PyErr = error.into();
                PyValueError::new_err(format!("{}: {key}: {error}", self.what))
            }),
            _ => Ok(None),
        }
    }

    fn required<T: FromPyObjectOwned<'py>>(&self, key: &str) -> PyResult<T> {
        self.optional(key)?.ok_or_else(|| PyValueError::new_err(format!("{}: {key} is missing", self.what)))
    }

    fn list<T: FromPyObjectOwned<'py>>(&self, key: &str) -> PyResult<Vec<T>> {
        Ok(self.optional(key)?.unwrap_or_default())
    }

    fn parsed<T: std::str::FromStr<Err = Error>>(&self, key: &str) -> PyResult<Option<T>> {
        self.optional::<String>(key)?.map(|text| text.parse::<T>()).transpose().into_py()
    }
}

const FILE_KEYS: &[&str] = &[
    "file_name",
    "digest",
    "digest_algorithm",
    "size",
    "modified",
    "patching_type",
    "sha256",
    "languages",
    "encrypted",
];
const DRIVER_KEYS: &[&str] = &[
    "hardware_id",
    "whql_driver_id",
    "manufacturer",
    "company",
    "provider",
    "driver_ver_date",
    "driver_ver_version",
    "class",
    "distribution_computer_hardware_ids",
    "target_computer_hardware_ids",
];
const METADATA_KEYS: &[&str] = &[
    "update_id",
    "revision_number",
    "update_type",
    "default_language",
    "publication_state",
    "creation_date",
    "explicitly_deployable",
    "is_public",
    "handler",
    "eula_id",
    "kb_article_id",
    "support_url",
    "more_info_url",
    "msrc_severity",
    "security_bulletin_id",
    "languages",
    "localized_properties",
    "category_type",
    "parent_category",
    "prerequisites",
    "prerequisite_groups",
    "category_groups",
    "bundled_updates",
    "superseded_updates",
    "files",
    "eula_files",
    "handler_data_type",
    "drivers",
];

fn file_from_dict(dict: &Bound<'_, PyDict>) -> PyResult<UpdateFile> {
    let fields = Fields::new(dict, "file", FILE_KEYS)?;
    Ok(UpdateFile {
        file_name: fields.required("file_name")?,
        digest: fields.required("digest")?,
        digest_algorithm: fields.optional("digest_algorithm")?.unwrap_or_else(|| "SHA1".to_owned()),
        size: fields.required("size")?,
        modified: fields.optional("modified")?,
        patching_type: fields.optional("patching_type")?,
        sha256: fields.optional("sha256")?,
        languages: fields.list("languages")?,
        encrypted: fields.optional("encrypted")?.unwrap_or(false),
    })
}

fn driver_from_dict(dict: &Bound<'_, PyDict>) -> PyResult<DriverMetadata> {
    let fields = Fields::new(dict, "driver", DRIVER_KEYS)?;
    Ok(DriverMetadata {
        hardware_id: fields.required("hardware_id")?,
        whql_driver_id: fields.optional("whql_driver_id")?,
        manufacturer: fields.optional("manufacturer")?,
        company: fields.optional("company")?,
        provider: fields.optional("provider")?,
        driver_ver_date: fields.optional("driver_ver_date")?,
        driver_ver_version: fields.optional("driver_ver_version")?,
        class: fields.optional("class")?,
        distribution_computer_hardware_ids: fields.list("distribution_computer_hardware_ids")?,
        target_computer_hardware_ids: fields.list("target_computer_hardware_ids")?,
    })
}

fn localized_from_dict(dict: &Bound<'_, PyDict>) -> PyResult<LocalizedProperties> {
    let fields = Fields::new(dict, "localized properties", &["language", "title", "description"])?;
    Ok(LocalizedProperties {
        language: fields.required("language")?,
        title: fields.required("title")?,
        description: fields.optional("description")?,
    })
}

fn metadata_from_dict(dict: &Bound<'_, PyDict>) -> PyResult<UpdateMetadata> {
    let fields = Fields::new(dict, "update metadata", METADATA_KEYS)?;
    let update_type = fields
        .parsed("update_type")?
        .ok_or_else(|| PyValueError::new_err("update metadata: update_type is missing"))?;
    let mut meta =
        UpdateMetadata::new(&fields.required::<String>("update_id")?, fields.required("revision_number")?, update_type);
    meta.default_language = fields.optional("default_language")?;
    meta.publication_state = fields.parsed("publication_state")?;
    meta.creation_date = fields.optional("creation_date")?;
    meta.explicitly_deployable = fields.optional("explicitly_deployable")?;
    meta.is_public = fields.optional("is_public")?;
    meta.handler = fields.optional("handler")?;
    meta.eula_id = fields.optional("eula_id")?;
    meta.kb_article_id = fields.optional("kb_article_id")?;
    meta.support_url = fields.optional("support_url")?;
    meta.more_info_url = fields.optional("more_info_url")?;
    meta.msrc_severity = fields.optional("msrc_severity")?;
    meta.security_bulletin_id = fields.optional("security_bulletin_id")?;
    meta.languages = fields.list("languages")?;
    meta.category_type = fields.parsed("category_type")?;
    meta.prerequisites = fields.list("prerequisites")?;
    meta.prerequisite_groups = fields.list("prerequisite_groups")?;
    meta.category_groups = fields.list("category_groups")?;
    meta.bundled_updates = fields
        .list::<(String, u32)>("bundled_updates")?
        .into_iter()
        .map(|(update_id, revision_number)| UpdateIdentity { update_id, revision_number })
        .collect();
    meta.superseded_updates = fields.list("superseded_updates")?;
    meta.handler_data_type = fields.optional("handler_data_type")?;
    let dicts = |key: &str| fields.list::<Bound<'_, PyDict>>(key);
    meta.localized_properties =
        dicts("localized_properties")?.iter().map(localized_from_dict).collect::<PyResult<_>>()?;
    meta.files = dicts("files")?.iter().map(file_from_dict).collect::<PyResult<_>>()?;
    meta.eula_files = dicts("eula_files")?.iter().map(file_from_dict).collect::<PyResult<_>>()?;
    meta.drivers = dicts("drivers")?.iter().map(driver_from_dict).collect::<PyResult<_>>()?;
    Ok(meta)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_update_blob, m)?)?;
    m.add_function(wrap_pyfunction!(decode_update_blobs, m)?)?;
    m.add_function(wrap_pyfunction!(encode_update_xml, m)?)?;
    m.add_function(wrap_pyfunction!(read_cabinet, m)?)?;
    m.add_function(wrap_pyfunction!(write_cabinet, m)?)?;
    Ok(())
}
