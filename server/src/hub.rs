//! A small Hugging Face hub client: downloads one file of a model or dataset repository
//! into the standard hub cache, the way `huggingface_hub.hf_hub_download` does.
//!
//! - Endpoint: `HF_ENDPOINT` (default `https://huggingface.co`). URLs are
//!   `{endpoint}/{repo}/resolve/{revision}/{file}` for models and
//!   `{endpoint}/datasets/{repo}/resolve/{revision}/{file}` for datasets.
//! - Cache: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, where
//!   `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`. Layout
//!   as in Python: `{kind}s--{org}--{name}/blobs/{etag}`, `refs/{revision}` holding the
//!   commit, `snapshots/{commit}/{file}` linking to the blob. Files cached by Python are
//!   found, and ours are found by Python.
//! - A file already in the cache is used without going online (the repositories we use do
//!   not change); `HF_HUB_OFFLINE=1` forbids going online at all.
//! - Token: `HF_TOKEN`, else the file `$HF_HOME/token`; sent to the endpoint only, never to
//!   the storage host it redirects to.
//!
//! We use `ureq` rather than the `hf-hub` crate: `hf-hub` 1.x pulls in reqwest, tokio and
//! the xet client, far more than fetching two CSV files or a checkpoint needs.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What kind of repository a file lives in (they have different URLs and cache folders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoKind {
    // Models are for `trm download-weights`, which is meant to share this client.
    #[allow(dead_code)]
    Model,
    Dataset,
}

/// A repository at a revision (branch, tag or commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    pub kind: RepoKind,
    /// `owner/name`.
    pub id: String,
    /// Branch, tag or commit hash; the hub's default is `main`.
    pub revision: String,
}

impl Repo {
    /// A dataset repository at `main`.
    pub fn dataset(id: &str) -> Repo {
        Repo { kind: RepoKind::Dataset, id: id.into(), revision: "main".into() }
    }

    /// A model repository at `main`.
    #[allow(dead_code)]
    pub fn model(id: &str) -> Repo {
        Repo { kind: RepoKind::Model, id: id.into(), revision: "main".into() }
    }

    /// The page of the repository on the public hub, for messages.
    pub fn web_url(&self) -> String {
        match self.kind {
            RepoKind::Model => format!("{DEFAULT_ENDPOINT}/{}", self.id),
            RepoKind::Dataset => format!("{DEFAULT_ENDPOINT}/datasets/{}", self.id),
        }
    }

    /// The cache folder name (`datasets--owner--name`), as huggingface_hub names it.
    fn cache_folder(&self) -> String {
        let prefix = match self.kind {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        };
        format!("{prefix}--{}", self.id.replace('/', "--"))
    }
}

/// Errors of [`Hub::download`].
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The endpoint cannot be reached (no network, DNS failure, refused, timed out), or
    /// `HF_HUB_OFFLINE` is set and the file is not cached.
    #[error("cannot reach the Hugging Face hub at {endpoint}: {reason}")]
    Offline { endpoint: String, reason: String },
    #[error("{url}: not found (HTTP 404); check the repository and file name")]
    NotFound { url: String },
    #[error("{url}: access denied (HTTP {status}); set HF_TOKEN to a token that can read the repository")]
    Denied { url: String, status: u16 },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Transfer { url: String, message: String },
    #[error("{url}: downloaded file has SHA-256 {found} but the hub says {expected}")]
    Checksum { url: String, expected: String, found: String },
    #[error("hub cache {path}: {source}")]
    Cache { path: String, source: io::Error },
}

impl HubError {
    /// Whether the error means the hub could not be reached at all (as opposed to a
    /// refusal or a broken transfer), so that callers can point to offline alternatives.
    pub fn is_offline(&self) -> bool {
        matches!(self, HubError::Offline { .. })
    }
}

/// Settings of the hub client, normally read from the environment.
#[derive(Clone, Debug)]
pub struct Hub {
    /// Base URL without a trailing slash.
    pub endpoint: String,
    /// The hub cache directory (`.../huggingface/hub`).
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    /// Never go online (`HF_HUB_OFFLINE`).
    pub offline: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Hub {
    /// Reads `HF_ENDPOINT`, `HF_HUB_CACHE`/`HUGGINGFACE_HUB_CACHE`/`HF_HOME`, `HF_TOKEN` and
    /// `HF_HUB_OFFLINE` like huggingface_hub.
    pub fn from_env() -> Hub {
        let home = env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = env("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            cache.join("huggingface")
        });
        let cache_dir = env("HF_HUB_CACHE")
            .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token = env("HF_TOKEN").or_else(|| {
            fs::read_to_string(home.join("token")).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = env("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        let endpoint = env("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()).trim_end_matches('/').to_string();
        Hub { endpoint, cache_dir, token, offline }
    }

    /// The URL of `file` in `repo`.
    pub fn file_url(&self, repo: &Repo, file: &str) -> String {
        let prefix = match repo.kind {
            RepoKind::Model => String::new(),
            RepoKind::Dataset => "datasets/".into(),
        };
        format!("{}/{prefix}{}/resolve/{}/{file}", self.endpoint, repo.id, repo.revision)
    }

    /// The cached copy of `file`, if there is one.
    pub fn cached(&self, repo: &Repo, file: &str) -> Option<PathBuf> {
        let root = self.cache_dir.join(repo.cache_folder());
        let commit = fs::read_to_string(root.join("refs").join(&repo.revision))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| repo.revision.clone());
        let path = root.join("snapshots").join(commit).join(file);
        path.is_file().then_some(path)
    }

    /// Returns the local path of `file` in `repo`, downloading it into the cache first if
    /// needed (with a progress bar on a terminal).
    pub fn download(&self, repo: &Repo, file: &str) -> Result<PathBuf, HubError> {
        if let Some(path) = self.cached(repo, file) {
            tracing::info!("{file}: using the cached copy {}", path.display());
            return Ok(path);
        }
        if self.offline {
            return Err(HubError::Offline {
                endpoint: self.endpoint.clone(),
                reason: format!(
                    "HF_HUB_OFFLINE is set and {file} of {} is not in the cache {}",
                    repo.id,
                    self.cache_dir.display()
                ),
            });
        }
        let url = self.file_url(repo, file);
        tracing::info!("downloading {url}");
        // The first answer carries the commit and the file's etag; for large (LFS) files it
        // is a redirect to a storage host whose answer does not, so redirects are followed
        // by hand.
        let first = self.get(&url, true)?;
        let header = |name: &str| first.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let commit = header("x-repo-commit").filter(|c| is_safe_name(c)).unwrap_or_else(|| repo.revision.clone());
        let etag =
            header("x-linked-etag").or_else(|| header("etag")).map(|e| clean_etag(&e)).filter(|e| is_safe_name(e));
        // Each hop is checked: a redirect may lead only to the endpoint's host or the hub's
        // storage hosts, never to a host a compromised mirror or proxy names.
        let mut response = first;
        let mut at = url.clone();
        for hop in 0.. {
            if !response.status().is_redirection() {
                break;
            }
            if hop == MAX_REDIRECTS {
                return Err(HubError::Transfer { url: url.clone(), message: format!("more than {MAX_REDIRECTS} redirects") });
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| HubError::Transfer { url: at.clone(), message: "redirect without a Location".into() })?;
            let target = resolve_location(&at, location);
            if !redirect_allowed(&self.endpoint, &target) {
                return Err(HubError::Transfer {
                    url: at,
                    message: format!("redirected to {target}, which is neither the hub ({}) nor its storage; refusing", self.endpoint),
                });
            }
            response = self.get(&target, false)?;
            at = target;
        }
        self.store(repo, file, &url, response, &commit, etag.as_deref())
    }

    /// One GET; a redirect is returned as is (the caller checks where it leads).
    fn get(
        &self,
        url: &str,
        with_token: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, HubError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("trm/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut request = agent.get(url);
        if let (true, Some(token)) = (with_token, &self.token) {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| self.classify(url, e))?;
        let status = response.status().as_u16();
        match status {
            200..=399 => Ok(response),
            404 => Err(HubError::NotFound { url: url.into() }),
            401 | 403 => Err(HubError::Denied { url: url.into(), status }),
            _ => Err(HubError::Status { url: url.into(), status }),
        }
    }

    /// Sorts transport errors into "cannot reach the hub" and the rest. Any failure before
    /// a response arrives (DNS, refused or reset connections, timeouts, TLS) counts as
    /// unreachable: in every such case the useful advice is the same, work offline.
    fn classify(&self, url: &str, error: ureq::Error) -> HubError {
        if is_unreachable(&error) {
            HubError::Offline { endpoint: self.endpoint.clone(), reason: error.to_string() }
        } else {
            HubError::Transfer { url: url.into(), message: error.to_string() }
        }
    }

    /// Streams the body into `blobs/`, checks its SHA-256 when the etag is one, then links
    /// it from `snapshots/{commit}/{file}` and records the commit in `refs/{revision}`.
    fn store(
        &self,
        repo: &Repo,
        file: &str,
        url: &str,
        mut response: ureq::http::Response<ureq::Body>,
        commit: &str,
        etag: Option<&str>,
    ) -> Result<PathBuf, HubError> {
        let root = self.cache_dir.join(repo.cache_folder());
        let blobs = root.join("blobs");
        let cache_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| HubError::Cache { path, source }
        };
        fs::create_dir_all(&blobs).map_err(cache_err(&blobs))?;
        let length = response.body().content_length();
        if let Some(length) = length.filter(|&l| l > MAX_DOWNLOAD_BYTES) {
            return Err(HubError::Transfer {
                url: url.into(),
                message: format!("the file is {length} bytes; downloads are capped at {MAX_DOWNLOAD_BYTES}"),
            });
        }
        let bar = progress_bar(length, file);
        let partial = blobs.join(format!(".{}.incomplete-{}", etag.unwrap_or("download"), std::process::id()));
        let result = (|| {
            let mut out = io::BufWriter::new(fs::File::create(&partial).map_err(cache_err(&partial))?);
            let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| HubError::Transfer { url: url.into(), message: e.to_string() })?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > MAX_DOWNLOAD_BYTES {
                    return Err(HubError::Transfer {
                        url: url.into(),
                        message: format!("more than {MAX_DOWNLOAD_BYTES} bytes sent; downloads are capped there"),
                    });
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(cache_err(&partial))?;
                bar.set_position(total);
            }
            if let Some(expected) = length.filter(|&l| l != total) {
                return Err(HubError::Transfer {
                    url: url.into(),
                    message: format!("connection closed after {total} of {expected} bytes"),
                });
            }
            out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).map_err(cache_err(&partial))?;
            let sha = hex(&hasher.finalize());
            // An LFS file's etag is the SHA-256 of its content: check it. A small file's etag
            // is a git blob hash, which we do not recompute.
            if let Some(expected) = etag.filter(|e| e.len() == 64) {
                if !expected.eq_ignore_ascii_case(&sha) {
                    return Err(HubError::Checksum { url: url.into(), expected: expected.into(), found: sha });
                }
            }
            Ok(etag.map_or(sha, str::to_string))
        })();
        bar.finish_and_clear();
        let blob_name = match result {
            Ok(name) => name,
            Err(e) => {
                let _ = fs::remove_file(&partial);
                return Err(e);
            }
        };
        let blob = blobs.join(&blob_name);
        fs::rename(&partial, &blob).map_err(cache_err(&blob))?;
        trm_shared::atomic::sync_dir(&blobs).map_err(cache_err(&blobs))?;

        let snapshot = root.join("snapshots").join(commit).join(file);
        let snapshot_dir = snapshot.parent().expect("a snapshot file has a folder");
        fs::create_dir_all(snapshot_dir).map_err(cache_err(snapshot_dir))?;
        link_or_copy(&blob, &snapshot).map_err(cache_err(&snapshot))?;
        if commit != repo.revision {
            let refs = root.join("refs");
            fs::create_dir_all(&refs).map_err(cache_err(&refs))?;
            let ref_path = refs.join(&repo.revision);
            if let Some(parent) = ref_path.parent() {
                fs::create_dir_all(parent).map_err(cache_err(parent))?;
            }
            trm_shared::atomic::write_file(&ref_path, commit.as_bytes()).map_err(cache_err(&ref_path))?;
        }
        tracing::info!("saved {file} to {}", snapshot.display());
        Ok(snapshot)
    }
}

/// Whether a request error means the server could not be reached or talked to at all.
fn is_unreachable(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::Io(_)
            | ureq::Error::Tls(_)
            | ureq::Error::Rustls(_)
    )
}

/// A download progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
fn progress_bar(length: Option<u64>, file: &str) -> ProgressBar {
    let bar = match length {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}").expect("valid template"),
        ),
    };
    bar.set_message(file.to_string());
    bar
}

/// The snapshot entry points at the blob with a relative symlink, as in Python's cache;
/// where symlinks fail, a copy does.
fn link_or_copy(blob: &Path, snapshot: &Path) -> io::Result<()> {
    let _ = fs::remove_file(snapshot);
    #[cfg(unix)]
    {
        let depth = snapshot
            .strip_prefix(blob.parent().and_then(Path::parent).unwrap_or(Path::new("/")))
            .map_or(0, |p| p.components().count().saturating_sub(1));
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().expect("a blob has a name"));
        if std::os::unix::fs::symlink(&target, snapshot).is_ok() {
            return Ok(());
        }
    }
    fs::copy(blob, snapshot).map(|_| ())
}

/// Strips quotes and the weak marker from an etag header.
fn clean_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// Whether a header value can safely become a file name in the cache.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

/// Redirects followed at most, each one checked by [`redirect_allowed`].
const MAX_REDIRECTS: usize = 5;
/// Largest file downloaded (the reference checkpoints and datasets are far smaller).
pub const MAX_DOWNLOAD_BYTES: u64 = 4 << 30;

/// The host of a URL (lowercase, without port or credentials), if it has one.
fn url_host(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    uri.host().filter(|h| !h.is_empty()).map(str::to_ascii_lowercase)
}

/// Whether a redirect from the hub may go to `target`: the endpoint's own host or one under
/// it, or the public hub's storage (under huggingface.co or hf.co, where LFS files live).
fn redirect_allowed(endpoint: &str, target: &str) -> bool {
    let (Some(home), Some(host)) = (url_host(endpoint), url_host(target)) else { return false };
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    let secure_enough = target.starts_with("https://") || endpoint.starts_with("http://");
    secure_enough && (under(&home) || under("huggingface.co") || under("hf.co"))
}

/// Resolves a redirect's Location against the URL that answered with it.
fn resolve_location(url: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    // Scheme and authority of `url`: everything before the first '/' after "://".
    let origin_end =
        url.find("://").map(|i| i + 3).and_then(|start| url[start..].find('/').map(|j| start + j)).unwrap_or(url.len());
    if location.starts_with('/') {
        format!("{}{location}", &url[..origin_end])
    } else {
        let base = &url[..url.rfind('/').filter(|&i| i >= origin_end).map_or(url.len(), |i| i + 1)];
        format!("{base}{location}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(endpoint: &str) -> Hub {
        Hub { endpoint: endpoint.into(), cache_dir: PathBuf::from("/c"), token: None, offline: false }
    }

    #[test]
    fn urls_like_huggingface_hub() {
        let h = hub("https://hf.example");
        assert_eq!(
            h.file_url(&Repo::dataset("sapientinc/maze-30x30-hard-1k"), "train.csv"),
            "https://hf.example/datasets/sapientinc/maze-30x30-hard-1k/resolve/main/train.csv"
        );
        assert_eq!(h.file_url(&Repo::model("o/m"), "w.pt"), "https://hf.example/o/m/resolve/main/w.pt");
        assert_eq!(Repo::dataset("a/b").cache_folder(), "datasets--a--b");
        assert_eq!(Repo::model("a/b").cache_folder(), "models--a--b");
    }

    #[test]
    fn redirects_stay_on_the_hub_and_its_storage() {
        let hub = "https://huggingface.co";
        assert!(redirect_allowed(hub, "https://cdn-lfs.huggingface.co/repos/x"));
        assert!(redirect_allowed(hub, "https://cas-bridge.xethub.hf.co/x?sig=1"));
        assert!(redirect_allowed(hub, "https://huggingface.co/api/resolve-cache/x"));
        assert!(!redirect_allowed(hub, "https://evil.example/x"));
        assert!(!redirect_allowed(hub, "https://huggingface.co.evil.example/x"));
        assert!(!redirect_allowed(hub, "https://evil.example/huggingface.co"));
        assert!(!redirect_allowed(hub, "https://user@evil.example/x"), "credentials do not hide the host");
        assert!(!redirect_allowed(hub, "http://cdn-lfs.huggingface.co/x"), "no step down to plain HTTP");
        assert!(!redirect_allowed(hub, "file:///etc/passwd"));
        let mirror = "http://127.0.0.1:8080";
        assert!(redirect_allowed(mirror, "http://127.0.0.1:9000/blob"));
        assert!(!redirect_allowed(mirror, "http://10.0.0.1/blob"));
        assert_eq!(url_host("https://a:b@Host.Example:443/p").as_deref(), Some("host.example"));
        assert_eq!(url_host("http://[::1]:80/p").as_deref(), Some("[::1]"));
    }

    #[test]
    fn resolves_redirects_and_cleans_etags() {
        assert_eq!(resolve_location("http://h:1/a/b/c", "/x/y"), "http://h:1/x/y");
        assert_eq!(resolve_location("http://h:1/a/b/c", "d"), "http://h:1/a/b/d");
        assert_eq!(resolve_location("http://h:1/a", "https://cdn/z"), "https://cdn/z");
        assert_eq!(clean_etag("W/\"abc\""), "abc");
        assert!(is_safe_name("0123abcdef") && !is_safe_name("../x") && !is_safe_name("a/b"));
    }

    #[test]
    fn dns_and_connection_failures_count_as_offline() {
        let h = hub("https://hf.example");
        // What a failed DNS lookup looks like through ureq (seen on a machine without network).
        let dns = ureq::Error::Io(io::Error::other("failed to lookup address information: Name or service not known"));
        assert!(h.classify("u", dns).is_offline());
        assert!(h.classify("u", ureq::Error::HostNotFound).is_offline());
        assert!(h.classify("u", ureq::Error::Io(io::ErrorKind::ConnectionRefused.into())).is_offline());
        assert!(!h.classify("u", ureq::Error::TooManyRedirects).is_offline());
        assert!(!h.classify("u", ureq::Error::StatusCode(500)).is_offline());
    }
}
