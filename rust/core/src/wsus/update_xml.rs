//! One update's XML (the `upd:Update` document of MS-WSUSSS) read into plain fields, and written back from them.
//!
//! Reading streams the text once with quick-xml, keeping only what `UpdateMetadata` holds; applicability rules and
//! handler data other than categories and drivers are skipped (the original XML is kept beside the record). Work is
//! bounded: a size limit, a nesting limit, and no DTD or entity is ever expanded. Writing produces the document a
//! WSUS server sends for those fields: the same namespaces, element and attribute names, the IsCategory prerequisite
//! groups naming products and classification, and files with their SHA-1 digest and SHA-256 additional digest.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{Namespace, NamespaceResolver, ResolveResult};

use crate::error::{Error, Result};

pub const UPDATE_NAMESPACE: &str = "http://schemas.microsoft.com/msus/2002/12/Update";
pub const PUBLISHING_NAMESPACE: &str = "http://schemas.microsoft.com/msus/2002/12/Publishing";
pub const HANDLERS_NAMESPACE: &str = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/";
pub const CATEGORY_NAMESPACE: &str = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Category";
pub const DRIVER_NAMESPACE: &str = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/WindowsDriver";
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The handlers of Microsoft Update and the prefixes its XML gives their namespaces.
const HANDLER_PREFIXES: &[(&str, &str)] = &[
    ("Category", "cat"),
    ("CommandLineInstallation", "cmd"),
    ("WindowsDriver", "drv"),
    ("WindowsPatch", "psf"),
    ("Cbs", "cbs"),
    ("WindowsInstaller", "msp"),
    ("WindowsSetup", "wsi"),
];

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name the XML uses.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self> {
                match text {
                    $(stringify!($variant) => Ok($name::$variant),)+
                    other => Err(Error::InvalidInput(format!(
                        "{} {other:?} is not one of {}", $what, [$(stringify!($variant)),+].join(", ")
                    ))),
                }
            }
        }
    };
}

string_enum!(
    /// Properties/@UpdateType.
    UpdateType, "UpdateType" { Software, Driver, Category, Detectoid }
);
string_enum!(
    /// Properties/@PublicationState.
    PublicationState, "PublicationState" { Published, Expired }
);
string_enum!(
    /// CategoryInformation/@CategoryType.
    CategoryType, "CategoryType" { Company, ProductFamily, Product, UpdateClassification }
);

/// An update named with its revision (bundled updates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateIdentity {
    pub update_id: String,
    pub revision_number: u32,
}

/// Title and description in one language.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalizedProperties {
    pub language: String,
    pub title: String,
    pub description: Option<String>,
}

/// One `upd:File`. Digests are lower-case hex (the XML carries base64).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateFile {
    pub file_name: String,
    /// The Digest attribute, in DigestAlgorithm (SHA1 in practice: the content store's name).
    pub digest: String,
    pub digest_algorithm: String,
    pub size: u64,
    pub modified: Option<String>,
    /// Express and delta files say how they patch; full files have none.
    pub patching_type: Option<String>,
    /// AdditionalDigest Algorithm="SHA256".
    pub sha256: Option<String>,
    /// The file's own `upd:Language` children: the languages it serves (none: every language of its update).
    pub languages: Vec<String>,
    /// @IsEncrypted: the file's bytes are encrypted; the key comes from GetUpdateDecryptionData.
    pub encrypted: bool,
}

/// One `drv:WindowsDriverMetaData`: a hardware ID the driver matches and what the match carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverMetadata {
    pub hardware_id: String,
    pub whql_driver_id: Option<String>,
    pub manufacturer: Option<String>,
    pub company: Option<String>,
    pub provider: Option<String>,
    pub driver_ver_date: Option<String>,
    pub driver_ver_version: Option<String>,
    pub class: Option<String>,
    pub distribution_computer_hardware_ids: Vec<String>,
    pub target_computer_hardware_ids: Vec<String>,
}

/// What upmirror reads from one update's XML. Update ids are lower-case GUIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMetadata {
    pub update_id: String,
    pub revision_number: u32,
    pub update_type: UpdateType,
    pub default_language: Option<String>,
    pub publication_state: Option<PublicationState>,
    pub creation_date: Option<String>,
    pub explicitly_deployable: Option<bool>,
    pub is_public: Option<bool>,
    /// Properties/@Handler: the namespace of the handler that installs the update.
    pub handler: Option<String>,
    pub eula_id: Option<String>,
    pub kb_article_id: Option<String>,
    pub support_url: Option<String>,
    pub more_info_url: Option<String>,
    pub msrc_severity: Option<String>,
    pub security_bulletin_id: Option<String>,
    /// Properties' `upd:Language` children: the languages a language-specific update is for (none: neutral).
    pub languages: Vec<String>,
    pub localized_properties: Vec<LocalizedProperties>,
    pub category_type: Option<CategoryType>,
    /// Prerequisites named alone: each must be installed.
    pub prerequisites: Vec<String>,
    /// Prerequisite AtLeastOne groups without IsCategory: one of each group.
    pub prerequisite_groups: Vec<Vec<String>>,
    /// Prerequisite AtLeastOne groups with IsCategory="true": an update's products, and in another group its
    /// classification; a category's parent. Which group is which takes knowing the categories: the caller's business.
    pub category_groups: Vec<Vec<String>>,
    pub bundled_updates: Vec<UpdateIdentity>,
    pub superseded_updates: Vec<String>,
    pub files: Vec<UpdateFile>,
    pub eula_files: Vec<UpdateFile>,
    /// The local name of HandlerSpecificData's xsi:type (Category, CommandLineInstallation, WindowsDriver, Cbs, ...).
    pub handler_data_type: Option<String>,
    pub drivers: Vec<DriverMetadata>,
}

impl UpdateMetadata {
    /// An update with its identity and type, every other field empty.
    pub fn new(update_id: &str, revision_number: u32, update_type: UpdateType) -> Self {
        UpdateMetadata {
            update_id: update_id.to_owned(),
            revision_number,
            update_type,
            default_language: None,
            publication_state: None,
            creation_date: None,
            explicitly_deployable: None,
            is_public: None,
            handler: None,
            eula_id: None,
            kb_article_id: None,
            support_url: None,
            more_info_url: None,
            msrc_severity: None,
            security_bulletin_id: None,
            languages: Vec::new(),
            localized_properties: Vec::new(),
            category_type: None,
            prerequisites: Vec::new(),
            prerequisite_groups: Vec::new(),
            category_groups: Vec::new(),
            bundled_updates: Vec::new(),
            superseded_updates: Vec::new(),
            files: Vec::new(),
            eula_files: Vec::new(),
            handler_data_type: None,
            drivers: Vec::new(),
        }
    }

    /// The parent of a category: the first id of its first IsCategory group (none for a company).
    pub fn parent_category(&self) -> Option<&str> {
        if self.update_type != UpdateType::Category {
            return None;
        }
        self.category_groups.first().and_then(|group| group.first()).map(String::as_str)
    }

    /// The title in a language, else in the default language, else the first one.
    pub fn title(&self, language: &str) -> Option<&str> {
        let find = |wanted: &str| self.localized_properties.iter().find(|p| p.language == wanted);
        find(language)
            .or_else(|| self.default_language.as_deref().and_then(find))
            .or_else(|| self.localized_properties.first())
            .map(|p| p.title.as_str())
    }

    /// The hardware IDs a driver matches, in the order of its metadata.
    pub fn hardware_ids(&self) -> impl Iterator<Item = &str> {
        self.drivers.iter().map(|d| d.hardware_id.as_str())
    }

    /// The computer hardware IDs (distribution and target) a driver is limited to.
    pub fn computer_hardware_ids(&self) -> impl Iterator<Item = &str> {
        self.drivers.iter().flat_map(|d| {
            d.distribution_computer_hardware_ids.iter().chain(&d.target_computer_hardware_ids).map(String::as_str)
        })
    }
}

/// Bounds on the work one update's XML may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Bytes of XML text (UTF-8).
    pub max_bytes: usize,
    /// Element nesting.
    pub max_depth: usize,
}

impl Default for ParseLimits {
    /// Real updates are kilobytes, the largest (applicability rules of Office and drivers) a few hundred; nesting
    /// stays under 30.
    fn default() -> Self {
        ParseLimits { max_bytes: 16 << 20, max_depth: 128 }
    }
}

fn bad(message: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("update XML: {message}"))
}

// ---------------------------------------------------------------------------------------------------------------------
// Reading

/// The namespaces the reader tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    Update,
    Category,
    Driver,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Update,
    UpdateIdentity,
    Properties,
    KbArticleId,
    SupportUrl,
    MoreInfoUrl,
    SecurityBulletinId,
    MsrcSeverity,
    LocalizedPropertiesCollection,
    LocalizedProperties,
    Language,
    Title,
    Description,
    Relationships,
    Prerequisites,
    AtLeastOne,
    BundledUpdates,
    SupersededUpdates,
    Files,
    EulaFiles,
    File,
    AdditionalDigest,
    HandlerSpecificData,
    CategoryInformation,
    WindowsDriverMetaData,
    DistributionComputerHardwareId,
    TargetComputerHardwareId,
    Other,
}

fn classify(space: Space, local: &str) -> Element {
    match space {
        Space::Update => match local {
            "Update" => Element::Update,
            "UpdateIdentity" => Element::UpdateIdentity,
            "Properties" => Element::Properties,
            "KBArticleID" => Element::KbArticleId,
            "SupportUrl" => Element::SupportUrl,
            "MoreInfoUrl" => Element::MoreInfoUrl,
            "SecurityBulletinID" => Element::SecurityBulletinId,
            "MsrcSeverity" => Element::MsrcSeverity,
            "LocalizedPropertiesCollection" => Element::LocalizedPropertiesCollection,
            "LocalizedProperties" => Element::LocalizedProperties,
            "Language" => Element::Language,
            "Title" => Element::Title,
            "Description" => Element::Description,
            "Relationships" => Element::Relationships,
            "Prerequisites" => Element::Prerequisites,
            "AtLeastOne" => Element::AtLeastOne,
            "BundledUpdates" => Element::BundledUpdates,
            "SupersededUpdates" => Element::SupersededUpdates,
            "Files" => Element::Files,
            "EulaFiles" => Element::EulaFiles,
            "File" => Element::File,
            "AdditionalDigest" => Element::AdditionalDigest,
            "HandlerSpecificData" => Element::HandlerSpecificData,
            _ => Element::Other,
        },
        Space::Category if local == "CategoryInformation" => Element::CategoryInformation,
        Space::Driver => match local {
            "WindowsDriverMetaData" => Element::WindowsDriverMetaData,
            "DistributionComputerHardwareId" => Element::DistributionComputerHardwareId,
            "TargetComputerHardwareId" => Element::TargetComputerHardwareId,
            _ => Element::Other,
        },
        _ => Element::Other,
    }
}

fn space_of(result: &ResolveResult<'_>) -> Space {
    match result {
        ResolveResult::Bound(Namespace(UPDATE_NAMESPACE)) => Space::Update,
        ResolveResult::Bound(Namespace(CATEGORY_NAMESPACE)) => Space::Category,
        ResolveResult::Bound(Namespace(DRIVER_NAMESPACE)) => Space::Driver,
        _ => Space::Other,
    }
}

/// Text being gathered for a field, with the depth of the element that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    KbArticleId,
    UpdateLanguage,
    FileLanguage,
    SupportUrl,
    MoreInfoUrl,
    SecurityBulletinId,
    MsrcSeverity,
    Language,
    Title,
    Description,
    Sha256,
    DistributionComputerHardwareId,
    TargetComputerHardwareId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileList {
    Files,
    Eula,
}

struct UpdateReader {
    meta: UpdateMetadata,
    identity_seen: bool,
    update_type_seen: bool,
    stack: Vec<Element>,
    capture: Option<(Capture, usize)>,
    text: String,
    /// The prerequisite AtLeastOne being read: (IsCategory, ids).
    group: Option<(bool, Vec<String>)>,
    /// Where the File being read went.
    file_list: FileList,
}

/// Reads one update's XML text.
pub fn parse_update_xml(xml: &str, limits: &ParseLimits) -> Result<UpdateMetadata> {
    if xml.len() > limits.max_bytes {
        return Err(bad(format!("{} bytes, above the limit of {}", xml.len(), limits.max_bytes)));
    }
    let mut reader = NsReader::from_str(xml);
    let mut state = UpdateReader {
        meta: UpdateMetadata::new("", 0, UpdateType::Software),
        identity_seen: false,
        update_type_seen: false,
        stack: Vec::with_capacity(32),
        capture: None,
        text: String::new(),
        group: None,
        file_list: FileList::Files,
    };
    let mut root_closed = false;
    loop {
        let (space, event) = match reader.read_resolved_event() {
            Ok((result, event)) => (space_of(&result), event),
            Err(error) => return Err(bad(format!("{error} (near byte {})", reader.error_position()))),
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let empty = matches!(event, Event::Empty(_));
                if root_closed {
                    return Err(bad("more than one root element"));
                }
                if state.stack.len() >= limits.max_depth {
                    return Err(bad(format!("elements nest deeper than {} levels", limits.max_depth)));
                }
                let element = classify(space, start.local_name().as_ref());
                if state.stack.is_empty() && element != Element::Update {
                    return Err(bad(format!("the root element is <{}>, not upd:Update", start.name().as_ref())));
                }
                state.start(element, start, reader.resolver())?;
                if empty {
                    state.end(element)?;
                    root_closed = state.stack.is_empty() && element == Element::Update;
                } else {
                    state.stack.push(element);
                }
            }
            Event::End(_) => {
                let element = state.stack.pop().ok_or_else(|| bad("an end tag without its start"))?;
                state.end(element)?;
                root_closed = state.stack.is_empty();
            }
            Event::Text(text) => {
                if state.capturing() {
                    state.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if state.capturing() {
                    state.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                if state.capturing() {
                    state.text.push(resolved);
                }
            }
            Event::DocType(_) => return Err(bad("a DTD is not allowed (entities are never expanded)")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !state.stack.is_empty() {
        return Err(bad("it ends inside an element (truncated?)"));
    }
    if !root_closed {
        return Err(bad("no upd:Update element"));
    }
    if !state.identity_seen {
        return Err(bad("no upd:UpdateIdentity"));
    }
    if !state.update_type_seen {
        return Err(bad(format!("update {}: no Properties/@UpdateType", state.meta.update_id)));
    }
    Ok(state.meta)
}

/// The five predefined entities and character references; anything else would need a DTD.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<char> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(bad(format!("bad character reference &{};", reference.xml10_content()))),
        };
    }
    match reference.xml10_content().as_ref() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(bad(format!("undefined entity &{other}; (entities are never expanded)"))),
    }
}

fn attribute_value(attribute: &Attribute<'_>) -> Result<String> {
    attribute
        .normalized_value(XmlVersion::Implicit1_0)
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| bad(format!("attribute {}: {e}", attribute.key.as_ref())))
}

/// Every attribute of an element with its (unresolved) name and value.
fn attributes(start: &BytesStart<'_>) -> Result<Vec<(String, String)>> {
    start
        .attributes()
        .map(|attribute| {
            let attribute = attribute.map_err(|e| bad(format!("<{}>: {e}", start.name().as_ref())))?;
            Ok((attribute.key.as_ref().to_owned(), attribute_value(&attribute)?))
        })
        .collect()
}

/// A GUID in its lower-case 8-4-4-4-12 form; braces are taken off.
pub fn normalize_guid(text: &str, what: &str) -> Result<String> {
    let trimmed = text.trim();
    let bare = trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(trimmed);
    let shaped = bare.len() == 36
        && bare
            .char_indices()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() });
    if !shaped {
        return Err(bad(format!("{what} {text:?} is not a GUID")));
    }
    Ok(bare.to_ascii_lowercase())
}

fn parse_bool(text: &str, what: &str) -> Result<bool> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(format!("{what} {text:?} is not true or false"))),
    }
}

fn parse_number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T> {
    text.trim().parse().map_err(|_| bad(format!("{what} {text:?} is not a number")))
}

fn base64_to_hex(text: &str, what: &str) -> Result<String> {
    BASE64.decode(text.trim()).map(hex::encode).map_err(|_| bad(format!("{what} {text:?} is not base64")))
}

impl UpdateReader {
    fn capturing(&self) -> bool {
        matches!(self.capture, Some((_, depth)) if depth == self.stack.len())
    }

    fn parent(&self) -> Option<Element> {
        self.stack.last().copied()
    }

    fn grandparent(&self) -> Option<Element> {
        self.stack.len().checked_sub(2).map(|i| self.stack[i])
    }

    fn capture(&mut self, what: Capture) {
        self.text.clear();
        self.capture = Some((what, self.stack.len() + 1));
    }

    fn start(&mut self, element: Element, start: &BytesStart<'_>, resolver: &NamespaceResolver) -> Result<()> {
        let parent = self.parent();
        match (element, parent) {
            (Element::UpdateIdentity, Some(parent)) => self.identity(parent, start)?,
            (Element::Properties, Some(Element::Update)) => self.properties(start)?,
            (Element::KbArticleId, Some(Element::Properties)) => self.capture(Capture::KbArticleId),
            (Element::SupportUrl, Some(Element::Properties)) => self.capture(Capture::SupportUrl),
            (Element::MoreInfoUrl, Some(Element::Properties)) => self.capture(Capture::MoreInfoUrl),
            (Element::SecurityBulletinId, Some(Element::Properties)) => self.capture(Capture::SecurityBulletinId),
            (Element::MsrcSeverity, Some(Element::Properties)) => self.capture(Capture::MsrcSeverity),
            (Element::LocalizedProperties, Some(Element::LocalizedPropertiesCollection)) => {
                self.meta.localized_properties.push(LocalizedProperties::default());
            }
            (Element::Language, Some(Element::LocalizedProperties)) => self.capture(Capture::Language),
            (Element::Language, Some(Element::Properties)) => self.capture(Capture::UpdateLanguage),
            (Element::Language, Some(Element::File)) => self.capture(Capture::FileLanguage),
            (Element::Title, Some(Element::LocalizedProperties)) => self.capture(Capture::Title),
            (Element::Description, Some(Element::LocalizedProperties)) => self.capture(Capture::Description),
            (Element::AtLeastOne, Some(Element::Prerequisites)) => {
                let mut is_category = false;
                for (name, value) in attributes(start)? {
                    if name == "IsCategory" {
                        is_category = parse_bool(&value, "AtLeastOne/@IsCategory")?;
                    }
                }
                self.group = Some((is_category, Vec::new()));
            }
            (Element::File, Some(Element::Files)) => {
                self.file_list = FileList::Files;
                self.meta.files.push(read_file(start)?);
            }
            (Element::File, Some(Element::EulaFiles)) => {
                self.file_list = FileList::Eula;
                self.meta.eula_files.push(read_file(start)?);
            }
            (Element::AdditionalDigest, Some(Element::File)) => {
                let sha256 = attributes(start)?.iter().any(|(name, value)| name == "Algorithm" && value == "SHA256");
                if sha256 {
                    self.capture(Capture::Sha256);
                }
            }
            (Element::HandlerSpecificData, Some(Element::Update)) => {
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| bad(format!("<HandlerSpecificData>: {e}")))?;
                    let (space, local) = resolver.resolve_attribute(attribute.key);
                    if local.as_ref() == "type" && matches!(space, ResolveResult::Bound(Namespace(XSI_NAMESPACE))) {
                        let value = attribute_value(&attribute)?;
                        let name = value.rsplit(':').next().unwrap_or_default().trim().to_owned();
                        self.meta.handler_data_type = Some(name);
                    }
                }
            }
            (Element::CategoryInformation, Some(Element::HandlerSpecificData)) => {
                for (name, value) in attributes(start)? {
                    if name == "CategoryType" {
                        self.meta.category_type = Some(value.parse()?);
                    }
                }
            }
            (Element::WindowsDriverMetaData, _) => self.meta.drivers.push(read_driver(start)?),
            (Element::DistributionComputerHardwareId, Some(Element::WindowsDriverMetaData)) => {
                self.capture(Capture::DistributionComputerHardwareId);
            }
            (Element::TargetComputerHardwareId, Some(Element::WindowsDriverMetaData)) => {
                self.capture(Capture::TargetComputerHardwareId);
            }
            _ => {}
        }
        Ok(())
    }

    fn identity(&mut self, parent: Element, start: &BytesStart<'_>) -> Result<()> {
        let mut update_id = None;
        let mut revision = None;
        for (name, value) in attributes(start)? {
            match name.as_str() {
                "UpdateID" => update_id = Some(value),
                "RevisionNumber" => revision = Some(value),
                _ => {}
            }
        }
        let Some(update_id) = update_id else {
            return Err(bad("an UpdateIdentity without UpdateID"));
        };
        let update_id = normalize_guid(&update_id, "UpdateID")?;
        let revision_of = |revision: Option<String>| -> Result<u32> {
            let revision = revision.ok_or_else(|| bad(format!("UpdateIdentity {update_id} without RevisionNumber")))?;
            parse_number(&revision, "RevisionNumber")
        };
        match (parent, self.grandparent()) {
            (Element::Update, _) => {
                self.meta.revision_number = revision_of(revision)?;
                self.meta.update_id = update_id;
                self.identity_seen = true;
            }
            (Element::Prerequisites, _) => self.meta.prerequisites.push(update_id),
            (Element::AtLeastOne, Some(Element::Prerequisites)) => {
                if let Some((_, ids)) = self.group.as_mut() {
                    ids.push(update_id);
                }
            }
            (Element::BundledUpdates, _) | (Element::AtLeastOne, Some(Element::BundledUpdates)) => {
                let revision_number = revision_of(revision)?;
                self.meta.bundled_updates.push(UpdateIdentity { update_id, revision_number });
            }
            (Element::SupersededUpdates, _) => self.meta.superseded_updates.push(update_id),
            _ => {}
        }
        Ok(())
    }

    fn properties(&mut self, start: &BytesStart<'_>) -> Result<()> {
        let meta = &mut self.meta;
        for (name, value) in attributes(start)? {
            match name.as_str() {
                "UpdateType" => {
                    meta.update_type = value.parse()?;
                    self.update_type_seen = true;
                }
                "DefaultPropertiesLanguage" => meta.default_language = Some(value),
                "PublicationState" => meta.publication_state = Some(value.parse()?),
                "CreationDate" => meta.creation_date = Some(value),
                "ExplicitlyDeployable" => {
                    meta.explicitly_deployable = Some(parse_bool(&value, "ExplicitlyDeployable")?);
                }
                "IsPublic" => meta.is_public = Some(parse_bool(&value, "IsPublic")?),
                "Handler" => meta.handler = Some(value),
                "EulaID" => meta.eula_id = Some(normalize_guid(&value, "EulaID")?),
                "MsrcSeverity" => meta.msrc_severity = Some(value),
                _ => {}
            }
        }
        Ok(())
    }

    fn end(&mut self, element: Element) -> Result<()> {
        // Only the element that opened a capture closes it (the stack no longer holds the closing element).
        if let Some((what, depth)) = self.capture
            && depth == self.stack.len() + 1
        {
            self.finish_capture(what)?;
        }
        if element == Element::AtLeastOne
            && self.parent() == Some(Element::Prerequisites)
            && let Some((is_category, ids)) = self.group.take()
        {
            if ids.is_empty() {
                return Err(bad("an empty AtLeastOne prerequisite group"));
            }
            if is_category {
                self.meta.category_groups.push(ids);
            } else {
                self.meta.prerequisite_groups.push(ids);
            }
        }
        Ok(())
    }

    fn finish_capture(&mut self, what: Capture) -> Result<()> {
        self.capture = None;
        let text = std::mem::take(&mut self.text);
        let meta = &mut self.meta;
        let localized = meta.localized_properties.last_mut();
        match what {
            Capture::KbArticleId => meta.kb_article_id = Some(text),
            Capture::SupportUrl => meta.support_url = Some(text),
            Capture::MoreInfoUrl => meta.more_info_url = Some(text),
            Capture::SecurityBulletinId => meta.security_bulletin_id = Some(text),
            Capture::MsrcSeverity => meta.msrc_severity = Some(text),
            Capture::UpdateLanguage => push_language(&mut meta.languages, &text)?,
            Capture::FileLanguage => {
                let files = match self.file_list {
                    FileList::Files => &mut meta.files,
                    FileList::Eula => &mut meta.eula_files,
                };
                if let Some(file) = files.last_mut() {
                    push_language(&mut file.languages, &text)?;
                }
            }
            Capture::Language => {
                if let Some(properties) = localized {
                    properties.language = text;
                }
            }
            Capture::Title => {
                if let Some(properties) = localized {
                    properties.title = text;
                }
            }
            Capture::Description => {
                if let Some(properties) = localized {
                    properties.description = Some(text);
                }
            }
            Capture::Sha256 => {
                let hex = base64_to_hex(&text, "AdditionalDigest")?;
                let files = match self.file_list {
                    FileList::Files => &mut meta.files,
                    FileList::Eula => &mut meta.eula_files,
                };
                if let Some(file) = files.last_mut() {
                    file.sha256 = Some(hex);
                }
            }
            Capture::DistributionComputerHardwareId => {
                if let Some(driver) = meta.drivers.last_mut() {
                    driver.distribution_computer_hardware_ids.push(normalize_guid(&text, "computer hardware ID")?);
                }
            }
            Capture::TargetComputerHardwareId => {
                if let Some(driver) = meta.drivers.last_mut() {
                    driver.target_computer_hardware_ids.push(normalize_guid(&text, "computer hardware ID")?);
                }
            }
        }
        Ok(())
    }
}

fn read_file(start: &BytesStart<'_>) -> Result<UpdateFile> {
    let mut file = UpdateFile::default();
    let mut digest = None;
    let mut size = None;
    for (name, value) in attributes(start)? {
        match name.as_str() {
            "Digest" => digest = Some(value),
            "DigestAlgorithm" => file.digest_algorithm = value,
            "FileName" => file.file_name = value,
            "Size" => size = Some(parse_number(&value, "File/@Size")?),
            "Modified" => file.modified = Some(value),
            "PatchingType" => file.patching_type = Some(value),
            "IsEncrypted" => file.encrypted = parse_bool(&value, "File/@IsEncrypted")?,
            _ => {}
        }
    }
    let digest = digest.ok_or_else(|| bad(format!("file {:?} has no Digest", file.file_name)))?;
    file.digest = base64_to_hex(&digest, "File/@Digest")?;
    file.size = size.ok_or_else(|| bad(format!("file {:?} has no Size", file.file_name)))?;
    Ok(file)
}

/// Adds a language code read from an `upd:Language` element (trimmed; a repeated one once). Codes are short
/// letters, digits and hyphens (`en`, `pt-BR`, `all`, `NeutralLanguage`); anything else is refused.
fn push_language(languages: &mut Vec<String>, text: &str) -> Result<()> {
    let code = text.trim();
    let shaped = !code.is_empty() && code.len() <= 40 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !shaped {
        return Err(bad(format!("language {text:?} is not a language code")));
    }
    if !languages.iter().any(|known| known == code) {
        languages.push(code.to_owned());
    }
    Ok(())
}

fn read_driver(start: &BytesStart<'_>) -> Result<DriverMetadata> {
    let mut driver = DriverMetadata::default();
    for (name, value) in attributes(start)? {
        match name.as_str() {
            "HardwareID" => driver.hardware_id = value,
            "WhqlDriverID" => driver.whql_driver_id = Some(value),
            "Manufacturer" => driver.manufacturer = Some(value),
            "Company" => driver.company = Some(value),
            "Provider" => driver.provider = Some(value),
            "DriverVerDate" => driver.driver_ver_date = Some(value),
            "DriverVerVersion" => driver.driver_ver_version = Some(value),
            "Class" => driver.class = Some(value),
            _ => {}
        }
    }
    Ok(driver)
}

// ---------------------------------------------------------------------------------------------------------------------
// Writing

/// Appends text escaped for XML 1.0: markup characters as entities; in attributes also the whitespace that
/// attribute-value normalization would fold, in text the carriage return that line-end handling would drop.
fn push_escaped(out: &mut String, value: &str, in_attribute: bool, what: &str) -> Result<()> {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if in_attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' if in_attribute => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            '\t' | '\n' => out.push(c),
            c if is_xml_char(c) => out.push(c),
            c => return Err(Error::InvalidInput(format!("{what}: the character {c:?} cannot be written in XML"))),
        }
    }
    Ok(())
}

fn is_xml_char(c: char) -> bool {
    !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// A small writer of the compact XML WSUS sends: no indentation, attributes in the order given.
struct XmlOut {
    out: String,
}

impl XmlOut {
    fn open(&mut self, name: &str, attributes: &[(&str, &str)]) -> Result<()> {
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attributes {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            push_escaped(&mut self.out, value, true, key)?;
            self.out.push('"');
        }
        self.out.push('>');
        Ok(())
    }

    fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) -> Result<()> {
        self.open(name, attributes)?;
        self.out.pop();
        self.out.push_str(" />");
        Ok(())
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn text_element(&mut self, name: &str, text: &str) -> Result<()> {
        self.open(name, &[])?;
        push_escaped(&mut self.out, text, false, name)?;
        self.close(name);
        Ok(())
    }
}

fn hex_to_base64(hex_digest: &str, what: &str) -> Result<String> {
    hex::decode(hex_digest)
        .map(|bytes| BASE64.encode(bytes))
        .map_err(|_| Error::InvalidInput(format!("{what} {hex_digest:?} is not hex")))
}

fn bool_text(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

/// Writes the update XML a WSUS server sends for these fields.
pub fn write_update_xml(meta: &UpdateMetadata) -> Result<String> {
    let mut xml = XmlOut { out: String::with_capacity(2048) };
    let mut root: Vec<(&str, &str)> = vec![("xmlns:pub", PUBLISHING_NAMESPACE)];
    if meta.category_type.is_some() {
        root.push(("xmlns:cat", CATEGORY_NAMESPACE));
    }
    if !meta.drivers.is_empty() {
        root.push(("xmlns:drv", DRIVER_NAMESPACE));
    }
    root.push(("xmlns:upd", UPDATE_NAMESPACE));
    xml.open("upd:Update", &root)?;

    let revision = meta.revision_number.to_string();
    xml.empty("upd:UpdateIdentity", &[("UpdateID", &meta.update_id), ("RevisionNumber", &revision)])?;
    write_properties(&mut xml, meta)?;

    if !meta.localized_properties.is_empty() {
        xml.open("upd:LocalizedPropertiesCollection", &[])?;
        for localized in &meta.localized_properties {
            xml.open("upd:LocalizedProperties", &[])?;
            xml.text_element("upd:Language", &localized.language)?;
            xml.text_element("upd:Title", &localized.title)?;
            if let Some(description) = &localized.description {
                xml.text_element("upd:Description", description)?;
            }
            xml.close("upd:LocalizedProperties");
        }
        xml.close("upd:LocalizedPropertiesCollection");
    }

    write_relationships(&mut xml, meta)?;

    if !meta.drivers.is_empty() {
        xml.open("upd:ApplicabilityRules", &[])?;
        xml.open("upd:Metadata", &[])?;
        for driver in &meta.drivers {
            write_driver(&mut xml, driver)?;
        }
        xml.close("upd:Metadata");
        xml.close("upd:ApplicabilityRules");
    }

    write_files(&mut xml, "upd:Files", &meta.files)?;
    write_files(&mut xml, "upd:EulaFiles", &meta.eula_files)?;
    write_handler_data(&mut xml, meta)?;
    xml.close("upd:Update");
    Ok(xml.out)
}

fn write_properties(xml: &mut XmlOut, meta: &UpdateMetadata) -> Result<()> {
    let mut attributes: Vec<(&str, &str)> = Vec::with_capacity(10);
    if let Some(language) = &meta.default_language {
        attributes.push(("DefaultPropertiesLanguage", language));
    }
    attributes.push(("UpdateType", meta.update_type.as_str()));
    if let Some(deployable) = meta.explicitly_deployable {
        attributes.push(("ExplicitlyDeployable", bool_text(deployable)));
    }
    if let Some(public) = meta.is_public {
        attributes.push(("IsPublic", bool_text(public)));
    }
    if let Some(handler) = &meta.handler {
        attributes.push(("Handler", handler));
    }
    if let Some(eula) = &meta.eula_id {
        attributes.push(("EulaID", eula));
    }
    if let Some(state) = meta.publication_state {
        attributes.push(("PublicationState", state.as_str()));
    }
    if let Some(date) = &meta.creation_date {
        attributes.push(("CreationDate", date));
    }
    let children = [
        ("upd:KBArticleID", &meta.kb_article_id),
        ("upd:SecurityBulletinID", &meta.security_bulletin_id),
        ("upd:MsrcSeverity", &meta.msrc_severity),
        ("upd:SupportUrl", &meta.support_url),
        ("upd:MoreInfoUrl", &meta.more_info_url),
    ];
    xml.open("upd:Properties", &attributes)?;
    for language in &meta.languages {
        xml.text_element("upd:Language", language)?;
    }
    for (name, value) in children {
        if let Some(value) = value {
            xml.text_element(name, value)?;
        }
    }
    xml.close("upd:Properties");
    Ok(())
}

fn write_relationships(xml: &mut XmlOut, meta: &UpdateMetadata) -> Result<()> {
    let has_prerequisites =
        !(meta.prerequisites.is_empty() && meta.prerequisite_groups.is_empty() && meta.category_groups.is_empty());
    if !has_prerequisites && meta.bundled_updates.is_empty() && meta.superseded_updates.is_empty() {
        return Ok(());
    }
    xml.open("upd:Relationships", &[])?;
    if has_prerequisites {
        xml.open("upd:Prerequisites", &[])?;
        for id in &meta.prerequisites {
            xml.empty("upd:UpdateIdentity", &[("UpdateID", id)])?;
        }
        let groups =
            meta.prerequisite_groups.iter().map(|g| (g, false)).chain(meta.category_groups.iter().map(|g| (g, true)));
        for (ids, is_category) in groups {
            if ids.is_empty() {
                return Err(Error::InvalidInput("an AtLeastOne prerequisite group needs at least one id".to_owned()));
            }
            xml.open("upd:AtLeastOne", if is_category { &[("IsCategory", "true")] } else { &[] })?;
            for id in ids {
                xml.empty("upd:UpdateIdentity", &[("UpdateID", id)])?;
            }
            xml.close("upd:AtLeastOne");
        }
        xml.close("upd:Prerequisites");
    }
    if !meta.bundled_updates.is_empty() {
        xml.open("upd:BundledUpdates", &[])?;
        xml.open("upd:AtLeastOne", &[])?;
        for bundled in &meta.bundled_updates {
            let revision = bundled.revision_number.to_string();
            xml.empty("upd:UpdateIdentity", &[("UpdateID", &bundled.update_id), ("RevisionNumber", &revision)])?;
        }
        xml.close("upd:AtLeastOne");
        xml.close("upd:BundledUpdates");
    }
    if !meta.superseded_updates.is_empty() {
        xml.open("upd:SupersededUpdates", &[])?;
        for id in &meta.superseded_updates {
            xml.empty("upd:UpdateIdentity", &[("UpdateID", id)])?;
        }
        xml.close("upd:SupersededUpdates");
    }
    xml.close("upd:Relationships");
    Ok(())
}

fn write_driver(xml: &mut XmlOut, driver: &DriverMetadata) -> Result<()> {
    let mut attributes: Vec<(&str, &str)> = vec![("HardwareID", &driver.hardware_id)];
    let optional = [
        ("WhqlDriverID", &driver.whql_driver_id),
        ("Manufacturer", &driver.manufacturer),
        ("Company", &driver.company),
        ("Provider", &driver.provider),
        ("DriverVerDate", &driver.driver_ver_date),
        ("DriverVerVersion", &driver.driver_ver_version),
        ("Class", &driver.class),
    ];
    attributes.extend(optional.iter().filter_map(|(name, value)| value.as_deref().map(|v| (*name, v))));
    let computer_ids = driver
        .distribution_computer_hardware_ids
        .iter()
        .map(|id| ("drv:DistributionComputerHardwareId", id))
        .chain(driver.target_computer_hardware_ids.iter().map(|id| ("drv:TargetComputerHardwareId", id)));
    xml.open("drv:WindowsDriverMetaData", &attributes)?;
    for (name, id) in computer_ids {
        xml.text_element(name, id)?;
    }
    xml.close("drv:WindowsDriverMetaData");
    Ok(())
}

fn write_files(xml: &mut XmlOut, list: &str, files: &[UpdateFile]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    xml.open(list, &[])?;
    for file in files {
        let digest = hex_to_base64(&file.digest, "file digest")?;
        let size = file.size.to_string();
        let mut attributes: Vec<(&str, &str)> = vec![
            ("Digest", &digest),
            ("DigestAlgorithm", &file.digest_algorithm),
            ("FileName", &file.file_name),
            ("Size", &size),
        ];
        if let Some(modified) = &file.modified {
            attributes.push(("Modified", modified));
        }
        if let Some(patching) = &file.patching_type {
            attributes.push(("PatchingType", patching));
        }
        if file.encrypted {
            attributes.push(("IsEncrypted", "true"));
        }
        xml.open("upd:File", &attributes)?;
        if let Some(sha256) = &file.sha256 {
            xml.open("upd:AdditionalDigest", &[("Algorithm", "SHA256")])?;
            xml.out.push_str(&hex_to_base64(sha256, "file SHA-256")?);
            xml.close("upd:AdditionalDigest");
        }
        for language in &file.languages {
            xml.text_element("upd:Language", language)?;
        }
        xml.close("upd:File");
    }
    xml.close(list);
    Ok(())
}

fn write_handler_data(xml: &mut XmlOut, meta: &UpdateMetadata) -> Result<()> {
    if meta.handler_data_type.is_none() && meta.category_type.is_none() {
        return Ok(());
    }
    let mut attributes: Vec<(&str, &str)> = Vec::new();
    let declared_type;
    let type_namespace;
    if let Some(name) = &meta.handler_data_type {
        let prefix = HANDLER_PREFIXES.iter().find(|(handler, _)| handler == name).map_or("hnd", |(_, prefix)| *prefix);
        let is_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !is_name {
            return Err(Error::InvalidInput(format!("handler data type {name:?} is not an XML name")));
        }
        // The category information inside is read in the Category namespace, whatever Handler says.
        type_namespace = match &meta.handler {
            Some(handler) if name != "Category" && handler.ends_with(&format!("/{name}")) => handler.clone(),
            _ => format!("{HANDLERS_NAMESPACE}{name}"),
        };
        declared_type = (format!("xmlns:{prefix}"), format!("{prefix}:{name}"));
        attributes.push(("xsi:type", &declared_type.1));
        attributes.push(("xmlns:xsi", XSI_NAMESPACE));
        attributes.push((&declared_type.0, &type_namespace));
    }
    xml.open("upd:HandlerSpecificData", &attributes)?;
    if let Some(category_type) = meta.category_type {
        xml.empty("cat:CategoryInformation", &[("CategoryType", category_type.as_str())])?;
    }
    xml.close("upd:HandlerSpecificData");
    Ok(())
}

#[cfg(test)]
#[path = "update_xml_tests.rs"]
mod tests;
