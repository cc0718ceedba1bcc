//! Crash-safe writes: files and directories appear whole or not at all.
//!
//! Everything is first written next to its destination under a hidden temporary name and
//! then renamed into place, so a killed process leaves either the old state or the new one,
//! plus at worst a stray `.partial` entry that the next write ignores.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A sibling of `dest` with a unique hidden name, for building `dest` before the rename.
fn temp_sibling(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    dest.with_file_name(format!(".{name}.partial-{}-{nanos}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_with(path, |w| w.write_all(bytes))
}

/// Writes a file atomically through a writer callback.
pub fn write_file_with(path: &Path, fill: impl FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut w = io::BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Builds a directory atomically: `fill` writes into a fresh temporary directory, which is
/// then renamed to `dest`. `dest` must not exist, or be an empty directory; anything else is
/// an `AlreadyExists` error, so no earlier output is ever overwritten or mixed with new files.
pub fn write_dir<E: From<io::Error>>(dest: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    check_dir_free(dest)?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_sibling(dest);
    fs::create_dir(&tmp)?;
    let result = fill(&tmp).and_then(|()| {
        // An empty directory may stand where the output goes (say, made by the user); it
        // holds nothing to lose.
        if dest.is_dir() {
            fs::remove_dir(dest)?;
        }
        sync_dir(&tmp)?;
        fs::rename(&tmp, dest)?;
        sync_parent(dest)?;
        Ok(())
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Flushes a directory's entries to disk: after a rename, the new name survives a power
/// loss only once its directory is synced (a no-op where directories cannot be opened).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// [`sync_dir`] of the directory holding `path`.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// Errors unless `dest` is absent or an empty directory.
pub fn check_dir_free(dest: &Path) -> io::Result<()> {
    match fs::read_dir(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
                format!("{} already exists and is not empty; choose another output directory", dest.display()),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let failed = write_file_with(&p, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two", "a failed write keeps the old file");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
    }

    #[test]
    fn dir_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let failed: io::Result<()> = write_dir(&out, |tmp| {
            fs::write(tmp.join("x"), b"1")?;
            Err(io::Error::other("boom"))
        });
        assert!(failed.is_err());
        assert!(!out.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        write_dir(&out, |tmp| fs::write(tmp.join("x"), b"1")).unwrap();
        assert_eq!(fs::read(out.join("x")).unwrap(), b"1");
        let again = write_dir(&out, |tmp| fs::write(tmp.join("y"), b"2"));
        assert_eq!(again.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert!(!out.join("y").exists());

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        write_dir(&empty, |tmp| fs::write(tmp.join("z"), b"3")).unwrap();
        assert!(empty.join("z").exists());
    }
}
