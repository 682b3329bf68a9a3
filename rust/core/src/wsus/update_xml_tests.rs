//! Tests of the update XML reader and writer: hand-written fixtures of each kind of update, the limits, and a
//! property test that writing then reading gives back every field.

use proptest::prelude::*;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/wsus/", $name))
    };
}

const FIXTURES: &[(&str, &str)] = &[
    ("leaf-update", fixture!("leaf-update.xml")),
    ("bundle", fixture!("bundle.xml")),
    ("category-company", fixture!("category-company.xml")),
    ("category-product-family", fixture!("category-product-family.xml")),
    ("category-product", fixture!("category-product.xml")),
    ("category-classification", fixture!("category-classification.xml")),
    ("detectoid", fixture!("detectoid.xml")),
    ("driver", fixture!("driver.xml")),
    ("expired", fixture!("expired.xml")),
    ("superseding", fixture!("superseding.xml")),
    ("language-specific", fixture!("language-specific.xml")),
];

const WINDOWS_11: &str = "72e7624a-5b00-45d2-b92f-e561c0a6a160";
const SECURITY_UPDATES: &str = "0fa1201d-4330-4fa8-8ae9-b877473b6441";

fn parse(xml: &str) -> UpdateMetadata {
    parse_update_xml(xml, &ParseLimits::default()).unwrap()
}

fn parse_error(xml: &str) -> String {
    parse_update_xml(xml, &ParseLimits::default()).unwrap_err().to_string()
}

fn ids(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn a_leaf_update() {
    let meta = parse(fixture!("leaf-update.xml"));
    assert_eq!(meta.update_id, "8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5d", "GUIDs come out lower-case");
    assert_eq!(meta.revision_number, 201);
    assert_eq!(meta.update_type, UpdateType::Software);
    assert_eq!(meta.default_language.as_deref(), Some("en"));
    assert_eq!(meta.publication_state, Some(PublicationState::Published));
    assert_eq!(meta.creation_date.as_deref(), Some("2026-03-10T17:00:00.000Z"));
    assert_eq!(meta.explicitly_deployable, Some(false));
    assert_eq!(meta.is_public, Some(false));
    assert_eq!(meta.handler.as_deref(), Some("http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Cbs"));
    assert_eq!(meta.handler_data_type.as_deref(), Some("Cbs"));
    assert_eq!(
        meta.title("en"),
        Some("Cumulative Update for Windows 11 (KB5099999) & servicing stack \u{2014} x64"),
        "entities and character references are resolved"
    );
    assert_eq!(meta.localized_properties[0].description, None);
    assert_eq!(meta.prerequisites, ids(&["59653007-e2e9-4f71-8525-2ff588527978"]));
    assert_eq!(
        meta.prerequisite_groups,
        vec![ids(&["be4048db-157c-4532-9582-7f05099590c9", "0aac58ee-82a0-4452-a7fa-19f68398f1fa"])]
    );
    assert_eq!(meta.category_groups, vec![ids(&[WINDOWS_11])], "a leaf may name only its product");
    assert_eq!(
        meta.files,
        vec![
            UpdateFile {
                file_name: "windows11.0-kb5099999-x64.cab".into(),
                digest: "1cf3bbb1588ea61fe1e04fcec403c742c1fd1e37".into(),
                digest_algorithm: "SHA1".into(),
                size: 123_456_789,
                modified: Some("2026-03-09T22:14:05Z".into()),
                patching_type: None,
                sha256: Some("43d424907bc18139e2d67d7401fd557b0b9e50b4d042b9e6e9de36abe94c597b".into()),
                languages: vec![],
                encrypted: false,
            },
            UpdateFile {
                file_name: "windows11.0-kb5099999-x64.psf".into(),
                digest: "d6ad06df9e1d7448b40343887f11c4056535e007".into(),
                digest_algorithm: "SHA1".into(),
                size: 987_654,
                modified: Some("2026-03-09T22:14:06Z".into()),
                patching_type: Some("Express".into()),
                sha256: Some("9cba11e04f05c6c03e2177abb2d1f302893d17b916e6cf2a999b783b224c62dd".into()),
                languages: vec![],
                encrypted: false,
            },
        ]
    );
    assert!(meta.bundled_updates.is_empty() && meta.superseded_updates.is_empty() && meta.drivers.is_empty());
    assert_eq!(meta.category_type, None);
    assert_eq!(meta.parent_category(), None);
}

#[test]
fn languages_of_an_update_and_of_its_files_and_encrypted_files() {
    let meta = parse(fixture!("language-specific.xml"));
    assert_eq!(meta.languages, ids(&["de", "fr"]), "Properties' Language children, a repeated one once");
    let files: Vec<(&str, Vec<String>, bool)> =
        meta.files.iter().map(|f| (f.file_name.as_str(), f.languages.clone(), f.encrypted)).collect();
    assert_eq!(
        files,
        vec![
            ("langpack-de.esd", ids(&["de"]), true),
            ("langpack-fr.esd", ids(&["fr"]), false),
            ("langpack-common.cab", vec![], false),
        ]
    );
    assert!(meta.localized_properties.iter().all(|p| !p.language.is_empty()), "titles keep their own languages");
    assert!(
        parse_error(&fixture!("language-specific.xml").replace("IsEncrypted=\"true\"", "IsEncrypted=\"maybe\""))
            .contains("IsEncrypted")
    );
    assert!(
        parse_error(&fixture!("language-specific.xml").replace(
            "<upd:Language>fr</upd:Language>\n    </upd:File>",
            "<upd:Language>f r</upd:Language></upd:File>"
        ))
        .contains("not a language code")
    );
}

#[test]
fn a_bundle_and_its_bundled_updates() {
    let meta = parse(fixture!("bundle.xml"));
    assert_eq!(meta.explicitly_deployable, Some(true));
    assert_eq!(meta.kb_article_id.as_deref(), Some("5099999"));
    assert_eq!(meta.support_url.as_deref(), Some("https://support.microsoft.com/help/5099999"));
    assert_eq!(meta.more_info_url.as_deref(), Some("https://catalog.example.invalid/?q=KB5099999&lang=en"));
    assert_eq!(meta.security_bulletin_id.as_deref(), Some("MS26-031"));
    assert_eq!(meta.msrc_severity.as_deref(), Some("Critical"));
    assert_eq!(meta.eula_id.as_deref(), Some("0a1b2c3d-0000-4000-8000-00000000e01a"));
    assert_eq!(meta.localized_properties.len(), 2);
    assert_eq!(
        meta.localized_properties[0].description.as_deref(),
        Some("A security issue has been identified. Install this update <now>.")
    );
    assert_eq!(meta.title("de"), Some("Sicherheitsupdate für Windows 11 (KB5099999)"));
    assert_eq!(meta.localized_properties[1].description.as_deref(), Some(""));
    assert_eq!(meta.title("fr"), meta.title("en"), "the default language stands in");
    assert_eq!(
        meta.category_groups,
        vec![ids(&[WINDOWS_11, "a3c2375d-0c8a-42f9-bce0-28333e198407"]), ids(&[SECURITY_UPDATES])]
    );
    assert!(meta.prerequisites.is_empty() && meta.prerequisite_groups.is_empty());
    assert_eq!(
        meta.bundled_updates,
        vec![
            UpdateIdentity { update_id: "8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5d".into(), revision_number: 201 },
            UpdateIdentity { update_id: "8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5e".into(), revision_number: 1 },
        ]
    );
    assert!(meta.files.is_empty());
    assert_eq!(meta.eula_files.len(), 1);
    assert_eq!(meta.eula_files[0].file_name, "eula-en.txt");
    assert_eq!(meta.eula_files[0].digest, "dd1ab6b2fde9a805615e403d578ce07208f769af");
    assert_eq!(
        meta.eula_files[0].sha256.as_deref(),
        Some("f452480fc24d8f6dd74afd7e377735b1030cd45d7d588ce2c5ab1c23062bfd8c")
    );
    // The bundled leaf is hidden: deployed only through its bundle.
    let leaf = parse(fixture!("leaf-update.xml"));
    assert_eq!(leaf.update_id, meta.bundled_updates[0].update_id);
    assert_eq!(leaf.explicitly_deployable, Some(false));
}

#[test]
fn categories_of_each_type_with_their_parents() {
    let expected = [
        ("category-company", CategoryType::Company, "Microsoft", None),
        (
            "category-product-family",
            CategoryType::ProductFamily,
            "Windows",
            Some("56309036-4c77-4dd9-951a-99ee9c246a94"),
        ),
        ("category-product", CategoryType::Product, "Windows 11", Some("6964aab4-c5b5-43bd-a17d-ffb4346a8e1d")),
        ("category-classification", CategoryType::UpdateClassification, "Security Updates", None),
    ];
    for (name, category_type, title, parent) in expected {
        let xml = FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1;
        let meta = parse(xml);
        assert_eq!(meta.update_type, UpdateType::Category, "{name}");
        assert_eq!(meta.category_type, Some(category_type), "{name}");
        assert_eq!(meta.handler_data_type.as_deref(), Some("Category"), "{name}");
        assert_eq!(meta.title("en"), Some(title), "{name}");
        assert_eq!(meta.parent_category(), parent, "{name}");
        assert_eq!(meta.revision_number, 202);
    }
}

#[test]
fn a_detectoid() {
    let meta = parse(fixture!("detectoid.xml"));
    assert_eq!(meta.update_type, UpdateType::Detectoid);
    assert_eq!(meta.title("en"), Some("Windows 11 x64"));
    assert!(meta.files.is_empty() && meta.category_groups.is_empty() && meta.handler_data_type.is_none());
}

#[test]
fn a_driver_with_hardware_ids() {
    let meta = parse(fixture!("driver.xml"));
    assert_eq!(meta.update_type, UpdateType::Driver);
    assert_eq!(meta.handler_data_type.as_deref(), Some("WindowsDriver"));
    assert_eq!(
        meta.hardware_ids().collect::<Vec<_>>(),
        ["PCI\\VEN_1234&DEV_5678&SUBSYS_00011234", "PCI\\VEN_1234&DEV_5678"]
    );
    assert_eq!(
        meta.computer_hardware_ids().collect::<Vec<_>>(),
        ["0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9", "1a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9"]
    );
    let first = &meta.drivers[0];
    assert_eq!(first.whql_driver_id.as_deref(), Some("12345678_abcdef"));
    assert_eq!(first.manufacturer.as_deref(), Some("Contoso"));
    assert_eq!(first.company.as_deref(), Some("Contoso Ltd"));
    assert_eq!(first.provider.as_deref(), Some("Contoso"));
    assert_eq!(first.driver_ver_date.as_deref(), Some("2026-01-15"));
    assert_eq!(first.driver_ver_version.as_deref(), Some("1.2.3.4"));
    assert_eq!(first.class.as_deref(), Some("Net"));
    assert!(meta.drivers[1].distribution_computer_hardware_ids.is_empty());
    assert_eq!(meta.files[0].digest, "5809a4d2e62001d61cbd677d2022f0619341e7f0");
}

#[test]
fn an_expired_update() {
    let meta = parse(fixture!("expired.xml"));
    assert_eq!(meta.publication_state, Some(PublicationState::Expired));
    assert_eq!(meta.kb_article_id.as_deref(), Some("4494441"));
}

#[test]
fn a_superseding_update() {
    let meta = parse(fixture!("superseding.xml"));
    assert_eq!(
        meta.superseded_updates,
        ids(&["c0ffee00-1234-4abc-8def-0123456789ab", "e0000000-0000-4000-8000-00000000dead"])
    );
    assert_eq!(meta.category_groups, vec![ids(&[WINDOWS_11]), ids(&[SECURITY_UPDATES])]);
}

#[test]
fn every_fixture_survives_writing_and_reading() {
    for (name, xml) in FIXTURES {
        let meta = parse(xml);
        let written = write_update_xml(&meta).unwrap();
        assert_eq!(parse(&written), meta, "{name}: {written}");
    }
}

#[test]
fn written_xml_is_what_wsus_sends() {
    let bundle = write_update_xml(&parse(fixture!("bundle.xml"))).unwrap();
    assert!(bundle.starts_with("<upd:Update xmlns:pub=\"http://schemas.microsoft.com/msus/2002/12/Publishing\""));
    assert!(bundle.contains("xmlns:upd=\"http://schemas.microsoft.com/msus/2002/12/Update\""));
    assert!(bundle.contains(concat!(
        "<upd:Prerequisites><upd:AtLeastOne IsCategory=\"true\">",
        "<upd:UpdateIdentity UpdateID=\"72e7624a-5b00-45d2-b92f-e561c0a6a160\" />"
    )));
    assert!(bundle.contains(
        "<upd:BundledUpdates><upd:AtLeastOne><upd:UpdateIdentity UpdateID=\"8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5d\" \
         RevisionNumber=\"201\" />"
    ));
    assert!(bundle.contains("<upd:Title>Sicherheitsupdate für Windows 11 (KB5099999)</upd:Title>"));
    assert!(bundle.contains("&lt;now&gt;"));

    let leaf = write_update_xml(&parse(fixture!("leaf-update.xml"))).unwrap();
    assert!(leaf.contains(
        "<upd:File Digest=\"HPO7sViOph/h4E/OxAPHQsH9Hjc=\" DigestAlgorithm=\"SHA1\" \
         FileName=\"windows11.0-kb5099999-x64.cab\" Size=\"123456789\" Modified=\"2026-03-09T22:14:05Z\">\
         <upd:AdditionalDigest Algorithm=\"SHA256\">Q9QkkHvBgTni1n10Af1VewueULTQQrnm6d42q+lMWXs=</upd:AdditionalDigest>"
    ));
    assert!(leaf.contains("<upd:HandlerSpecificData xsi:type=\"cbs:Cbs\""));

    let category = write_update_xml(&parse(fixture!("category-product.xml"))).unwrap();
    assert!(category.contains(concat!(
        "<upd:HandlerSpecificData xsi:type=\"cat:Category\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ",
        "xmlns:cat=\"http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Category\">",
        "<cat:CategoryInformation CategoryType=\"Product\" /></upd:HandlerSpecificData>"
    )));

    let driver = write_update_xml(&parse(fixture!("driver.xml"))).unwrap();
    assert!(driver.contains(concat!(
        "<upd:ApplicabilityRules><upd:Metadata><drv:WindowsDriverMetaData ",
        "HardwareID=\"PCI\\VEN_1234&amp;DEV_5678&amp;SUBSYS_00011234\""
    )));
}

// ---------------------------------------------------------------------------------------------------------------------
// Bounded work and bad input

const MINIMAL: &str = concat!(
    "<upd:Update xmlns:upd=\"http://schemas.microsoft.com/msus/2002/12/Update\">",
    "<upd:UpdateIdentity UpdateID=\"17e993cd-cf5a-4276-9944-6af62ff7139c\" RevisionNumber=\"100\" />",
    "<upd:Properties UpdateType=\"Detectoid\" />",
    "</upd:Update>"
);

#[test]
fn a_minimal_update_reads() {
    let meta = parse(MINIMAL);
    assert_eq!(meta, UpdateMetadata::new("17e993cd-cf5a-4276-9944-6af62ff7139c", 100, UpdateType::Detectoid));
}

#[test]
fn xml_above_the_size_limit_is_refused() {
    let limits = ParseLimits { max_bytes: 100, max_depth: 128 };
    let message = parse_update_xml(MINIMAL, &limits).unwrap_err().to_string();
    assert!(message.contains("above the limit of 100"), "{message}");
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let deep = format!(
        "{}<upd:ApplicabilityRules>{}x{}</upd:ApplicabilityRules></upd:Update>",
        MINIMAL.trim_end_matches("</upd:Update>"),
        "<a>".repeat(200),
        "</a>".repeat(200)
    );
    assert!(parse_error(&deep).contains("deeper than 128 levels"));
    let shallow = ParseLimits { max_bytes: 1 << 20, max_depth: 300 };
    assert!(parse_update_xml(&deep, &shallow).is_ok());
}

#[test]
fn dtds_and_entities_are_never_expanded() {
    let billion_laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE upd:Update [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>{}",
        MINIMAL.replace("Detectoid\" />", "Detectoid\"><upd:KBArticleID>&lol2;</upd:KBArticleID></upd:Properties>")
    );
    assert!(parse_error(&billion_laughs).contains("DTD is not allowed"));
    let undefined =
        MINIMAL.replace("Detectoid\" />", "Detectoid\"><upd:KBArticleID>&lol;</upd:KBArticleID></upd:Properties>");
    assert!(parse_error(&undefined).contains("undefined entity &lol;"));
    let in_attribute = MINIMAL.replace("RevisionNumber=\"100\"", "RevisionNumber=\"&lol;\"");
    assert!(parse_error(&in_attribute).contains("RevisionNumber"), "{}", parse_error(&in_attribute));
}

#[test]
fn malformed_updates_are_named() {
    let cases = [
        ("", "no upd:Update element"),
        ("<Update/>", "not upd:Update"),
        (MINIMAL.trim_end_matches("</upd:Update>"), "truncated"),
        (&MINIMAL[..MINIMAL.len() - 20], "syntax error"),
        (&MINIMAL.replace("UpdateType=\"Detectoid\"", "UpdateType=\"Bundle\""), "UpdateType \"Bundle\" is not one of"),
        (&MINIMAL.replace("17e993cd-cf5a", "not-a-guid"), "is not a GUID"),
        (&MINIMAL.replace("\"100\"", "\"1x\""), "RevisionNumber \"1x\" is not a number"),
        (&MINIMAL.replace("<upd:Properties UpdateType=\"Detectoid\" />", ""), "no Properties/@UpdateType"),
        (&MINIMAL.replace("<upd:UpdateIdentity", "<upd:Other"), "no upd:UpdateIdentity"),
        (&format!("{MINIMAL}<upd:Update/>"), "more than one root element"),
        (&MINIMAL.replace("</upd:Update>", "</upd:Wrong>"), "update XML"),
        (
            &MINIMAL.replace(
                "<upd:Properties UpdateType=\"Detectoid\" />",
                "<upd:Properties UpdateType=\"Software\" /><upd:Files><upd:File Digest=\"!!\" Size=\"1\" /></upd:Files>",
            ),
            "is not base64",
        ),
    ];
    for (xml, expected) in cases {
        let message = parse_error(xml);
        assert!(message.contains(expected), "{xml:?}: {message}");
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Writing then reading gives back every field

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 &<>\"'\t\n\r/:;.\u{e9}\u{4e2d}\u{1f6e1}]{0,12}"
}

fn guid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

fn file() -> impl Strategy<Value = UpdateFile> {
    (
        text(),
        "[0-9a-f]{40}",
        prop::sample::select(vec!["SHA1", "SHA256"]),
        any::<u64>(),
        prop::option::of(text()),
        prop::option::of(prop::sample::select(vec!["Express", "Delta", "Full"])),
        prop::option::of("[0-9a-f]{64}"),
        languages(),
        any::<bool>(),
    )
        .prop_map(|(file_name, digest, algorithm, size, modified, patching_type, sha256, languages, encrypted)| {
            UpdateFile {
                file_name,
                digest,
                digest_algorithm: algorithm.to_owned(),
                size,
                modified,
                patching_type: patching_type.map(str::to_owned),
                sha256,
                languages,
                encrypted,
            }
        })
}

/// Distinct language codes (a repeated one is read once).
fn languages() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(vec!["en", "de", "pt-BR", "zh-CN", "all"], 0..3)
        .prop_map(|codes| codes.into_iter().map(str::to_owned).collect())
}

fn driver() -> impl Strategy<Value = DriverMetadata> {
    (
        text(),
        prop::collection::vec(prop::option::of(text()), 7),
        prop::collection::vec(guid(), 0..3),
        prop::collection::vec(guid(), 0..3),
    )
        .prop_map(|(hardware_id, optional, distribution, target)| {
            let [whql, manufacturer, company, provider, date, version, class] =
                <[Option<String>; 7]>::try_from(optional).unwrap();
            DriverMetadata {
                hardware_id,
                whql_driver_id: whql,
                manufacturer,
                company,
                provider,
                driver_ver_date: date,
                driver_ver_version: version,
                class,
                distribution_computer_hardware_ids: distribution,
                target_computer_hardware_ids: target,
            }
        })
}

fn localized() -> impl Strategy<Value = LocalizedProperties> {
    (text(), text(), prop::option::of(text())).prop_map(|(language, title, description)| LocalizedProperties {
        language,
        title,
        description,
    })
}

fn metadata() -> impl Strategy<Value = UpdateMetadata> {
    let identity = (
        guid(),
        any::<u32>(),
        prop::sample::select(UpdateType::ALL.to_vec()),
        prop::option::of(prop::sample::select(PublicationState::ALL.to_vec())),
        prop::option::of(prop::sample::select(CategoryType::ALL.to_vec())),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(guid()),
    );
    let texts = prop::collection::vec(prop::option::of(text()), 8);
    let handler_type = prop::option::of(prop::sample::select(vec![
        "Category",
        "CommandLineInstallation",
        "WindowsDriver",
        "Cbs",
        "WindowsInstaller",
        "WindowsPatch",
        "WindowsSetup",
        "InfBasedInstallation",
    ]));
    let relationships = (
        prop::collection::vec(guid(), 0..3),
        prop::collection::vec(prop::collection::vec(guid(), 1..3), 0..3),
        prop::collection::vec(prop::collection::vec(guid(), 1..3), 0..3),
        prop::collection::vec((guid(), any::<u32>()), 0..3),
        prop::collection::vec(guid(), 0..3),
    );
    let content = (
        (prop::collection::vec(localized(), 0..3), languages()),
        prop::collection::vec(file(), 0..3),
        prop::collection::vec(file(), 0..2),
        prop::collection::vec(driver(), 0..3),
    );
    (identity, texts, handler_type, relationships, content).prop_map(
        |(identity, texts, handler_type, relationships, content)| {
            let (
                update_id,
                revision_number,
                update_type,
                publication_state,
                category_type,
                explicitly_deployable,
                is_public,
                eula_id,
            ) = identity;
            let [
                default_language,
                creation_date,
                handler,
                kb_article_id,
                support_url,
                more_info_url,
                msrc_severity,
                security_bulletin_id,
            ] = <[Option<String>; 8]>::try_from(texts).unwrap();
            let (prerequisites, prerequisite_groups, category_groups, bundled, superseded_updates) = relationships;
            let ((localized_properties, languages), files, eula_files, drivers) = content;
            let bundled_updates = bundled
                .into_iter()
                .map(|(update_id, revision_number)| UpdateIdentity { update_id, revision_number })
                .collect();
            UpdateMetadata {
                update_id,
                revision_number,
                update_type,
                default_language,
                publication_state,
                creation_date,
                explicitly_deployable,
                is_public,
                handler,
                eula_id,
                kb_article_id,
                support_url,
                more_info_url,
                msrc_severity,
                security_bulletin_id,
                languages,
                localized_properties,
                category_type,
                prerequisites,
                prerequisite_groups,
                category_groups,
                bundled_updates,
                superseded_updates,
                files,
                eula_files,
                handler_data_type: handler_type.map(str::to_owned),
                drivers,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn writing_then_reading_gives_back_every_field(meta in metadata()) {
        let written = write_update_xml(&meta).unwrap();
        let read = parse_update_xml(&written, &ParseLimits::default())
            .unwrap_or_else(|error| panic!("{error}: {written}"));
        prop_assert_eq!(read, meta, "{}", written);
    }
}

#[test]
fn a_character_xml_cannot_hold_is_refused_when_writing() {
    let mut meta = parse(MINIMAL);
    meta.kb_article_id = Some("bell\u{7}".into());
    let message = write_update_xml(&meta).unwrap_err().to_string();
    assert!(message.contains("cannot be written in XML"), "{message}");
}
