//! Test helpers shared by the CLI integration tests.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use sha2::{Digest, Sha256};

/// The commit the local hub reports for every file.
pub const HUB_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A local stand-in for the Hugging Face hub, reached through `HF_ENDPOINT`.
pub struct LocalHub {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Connections served so far.
        pub requests: Arc<AtomicUsize>,
}

/// Serves `files` under `resolve_path` (e.g. `/datasets/OWNER/NAME/resolve/main`): `resolve`
/// answers with a redirect carrying the commit and the LFS etag (the SHA-256), as
/// huggingface.co does for LFS files, and the redirect target serves the bytes. With
/// `corrupt`, the bytes served differ from what the etag promises.
pub fn serve_hub(resolve_path: &str, files: Vec<(String, Vec<u8>)>, corrupt: bool) -> LocalHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let resolve_path = resolve_path.to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = answer(stream, &resolve_path, &files, corrupt);
        }
    });
    LocalHub { endpoint, requests }
}

fn answer(mut stream: TcpStream, resolve_path: &str, files: &[(String, Vec<u8>)], corrupt: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    for (name, body) in files {
        if path == format!("{resolve_path}/{name}") {
            let sha = sha256_hex(body);
            return write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: /cdn/{name}\r\nX-Repo-Commit: {HUB_COMMIT}\r\nX-Linked-Etag: \"{sha}\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        if path == format!("/cdn/{name}") {
            let mut body = body.clone();
            if corrupt {
                let middle = body.len() / 2;
                body[middle] ^= 1;
            }
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            return stream.write_all(&body);
        }
    }
    write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

/// Lower-case hex SHA-256, as the hub's LFS etags carry it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The real benchmark, shipped read-only beside the repository.
pub fn benchmark() -> std::path::PathBuf {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/maze-30x30-hard-1k")).to_path_buf()
}

/// The `trm` binary under test.
pub fn trm() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_trm"))
}

/// The stdout of a run that must have succeeded.
pub fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "trm failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failed run that printed one `error: ` line containing `part`.
pub fn assert_error(out: &std::process::Output, part: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure");
    assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "one line: {err:?}");
    assert!(err.contains(part), "{part:?} missing from {err:?}");
}
