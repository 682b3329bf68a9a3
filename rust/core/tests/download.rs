//! `download()` through the public API against a real HTTP server on loopback (tests/common): small files, one sent
//! with chunked transfer encoding, one large enough to be fetched in Range chunks; the lean connections kept alive
//! across files, and an idle connection the server closed replaced without a failure.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{FileServer, Framing, payload};
use sha1::{Digest, Sha1};
use upmirror_core::fetch::download;
use upmirror_core::{
    ContentName, DownloadJob, DownloadOptions, DownloadReport, ExpectedDigests, FileOutcome, HttpClient, HttpOptions,
    Progress, RetryPolicy,
};

const CHUNK: u64 = 64 << 10; // the smallest chunk size the engine accepts

fn name_of(data: &[u8]) -> ContentName {
    ContentName::new(Sha1::digest(data).into(), ".cab").unwrap()
}

fn job(server: &FileServer, path: &str, data: &[u8]) -> DownloadJob {
    let expected = ExpectedDigests { blake3: Some(*blake3::hash(data).as_bytes()), ..ExpectedDigests::default() };
    DownloadJob::content(server.url(path), name_of(data), data.len() as u64, expected)
}

fn client() -> Arc<HttpClient> {
    let options = HttpOptions { read_timeout: Duration::from_secs(5), ..HttpOptions::default() };
    Arc::new(HttpClient::new(&options).unwrap())
}

fn run(client: &Arc<HttpClient>, root: &Path, jobs: Vec<DownloadJob>, options: DownloadOptions) -> DownloadReport {
    download(Arc::clone(client), root, jobs, options, Arc::new(Progress::new())).unwrap()
}

fn options(connections: usize, retries: u32) -> DownloadOptions {
    let retry = RetryPolicy { retries, ..RetryPolicy::default() };
    DownloadOptions { connections, chunk_size: CHUNK, retry, ..DownloadOptions::default() }
}

fn placed(root: &Path, data: &[u8]) -> Vec<u8> {
    std::fs::read(root.join(name_of(data).relative_path())).unwrap()
}

#[test]
fn small_chunked_encoding_and_ranged_files_land_verified() {
    let small = payload(3000, 1);
    let streamed = payload(50_000, 2); // under one chunk: one request, answered without a Content-Length
    let large = payload(5 * CHUNK as usize + 123, 3); // six Range chunks
    let server = FileServer::start(vec![
        ("/small.cab", small.clone(), Framing::ContentLength),
        ("/streamed.cab", streamed.clone(), Framing::Chunked(4096)),
        ("/large.cab", large.clone(), Framing::ContentLength),
    ]);
    let root = tempfile::tempdir().unwrap();
    let jobs = vec![
        job(&server, "/small.cab", &small),
        job(&server, "/streamed.cab", &streamed),
        job(&server, "/large.cab", &large),
    ];
    let report = run(&client(), root.path(), jobs, options(2, 0));

    for outcome in &report.outcomes {
        assert!(matches!(outcome, FileOutcome::Placed { .. }), "{outcome:?}");
    }
    assert_eq!(placed(root.path(), &small), small);
    assert_eq!(placed(root.path(), &streamed), streamed);
    assert_eq!(placed(root.path(), &large), large);
    assert_eq!(report.bytes_transferred, (small.len() + streamed.len() + large.len()) as u64);
    assert_eq!(server.requests("/small.cab"), vec![None]);
    assert_eq!(server.requests("/streamed.cab"), vec![None]);
    let mut ranges = server.requests("/large.cab");
    ranges.sort();
    let expected: Vec<Option<String>> = (0..6u64)
        .map(|i| Some(format!("bytes={}-{}", i * CHUNK, ((i + 1) * CHUNK).min(large.len() as u64) - 1)))
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(ranges, expected_sorted, "each chunk asked for once, by Range");
    assert_eq!(std::fs::read_dir(root.path().join(".partial")).unwrap().count(), 0);

    // A second run finds every file in place and asks the server nothing.
    let connections = server.connections();
    let again = run(
        &client(),
        root.path(),
        vec![job(&server, "/small.cab", &small), job(&server, "/large.cab", &large)],
        options(2, 0),
    );
    assert!(again.outcomes.iter().all(|o| matches!(o, FileOutcome::Skipped { .. })), "{:?}", again.outcomes);
    assert_eq!((again.bytes_transferred, server.connections()), (0, connections));
}

#[test]
fn a_digest_mismatch_is_reported_by_name_and_nothing_is_placed() {
    let data = payload(2000, 4);
    let server = FileServer::start(vec![("/a.cab", payload(2000, 5), Framing::ContentLength)]);
    let root = tempfile::tempdir().unwrap();
    let report = run(&client(), root.path(), vec![job(&server, "/a.cab", &data)], options(1, 0));
    let FileOutcome::Failed { reason } = &report.outcomes[0] else { panic!("{:?}", report.outcomes) };
    assert!(reason.contains(&name_of(&data).relative_path()), "{reason}");
    assert!(reason.contains("digest mismatch"), "{reason}");
    assert!(!root.path().join(name_of(&data).relative_path()).exists());
}

#[test]
fn small_files_share_kept_alive_connections() {
    let files: Vec<(String, Vec<u8>)> =
        (0..40).map(|i| (format!("/k{i}.cab"), payload(1000 + i * 37, 100 + i as u64))).collect();
    let server = FileServer::start(
        files.iter().map(|(path, data)| (path.as_str(), data.clone(), Framing::ContentLength)).collect(),
    );
    let root = tempfile::tempdir().unwrap();
    let client = client();
    let jobs = files.iter().map(|(path, data)| job(&server, path, data)).collect();
    let report = run(&client, root.path(), jobs, options(2, 0));
    assert!(report.outcomes.iter().all(|o| matches!(o, FileOutcome::Placed { .. })), "{:?}", report.outcomes);
    assert!(files.iter().all(|(_, data)| placed(root.path(), data) == *data));
    assert!(server.connections() <= 2, "40 files over {} connections", server.connections());

    // The same client's next download reuses the idle connections rather than opening new ones.
    let before = server.connections();
    assert_eq!(server.requests("/k0.cab").len(), 1);
    let other = tempfile::tempdir().unwrap();
    let report = run(&client, other.path(), vec![job(&server, "/k1.cab", &files[1].1)], options(2, 0));
    assert!(matches!(report.outcomes[0], FileOutcome::Placed { .. }), "{:?}", report.outcomes);
    assert_eq!(server.connections(), before, "an idle connection was reused");
}

#[test]
fn an_idle_connection_the_server_closed_is_replaced_without_a_failure() {
    let (first, second) = (payload(5000, 7), payload(6000, 8));
    let server = FileServer::start(vec![
        ("/a.cab", first.clone(), Framing::ContentLength),
        ("/b.cab", second.clone(), Framing::ContentLength),
    ]);
    let root = tempfile::tempdir().unwrap();
    let client = client();
    let report = run(&client, root.path(), vec![job(&server, "/a.cab", &first)], options(1, 0));
    assert!(matches!(report.outcomes[0], FileOutcome::Placed { .. }), "{:?}", report.outcomes);
    assert_eq!(server.connections(), 1);

    server.close_idle_connections();
    // No retries allowed: the closed connection must be noticed and replaced, not spend an attempt.
    let report = run(&client, root.path(), vec![job(&server, "/b.cab", &second)], options(1, 0));
    assert!(matches!(report.outcomes[0], FileOutcome::Placed { .. }), "{:?}", report.outcomes);
    assert_eq!(placed(root.path(), &second), second);
    assert_eq!(server.connections(), 2, "one new connection replaced the closed one");
    assert_eq!(server.requests("/b.cab").len(), 1, "the file was asked for once");
}
