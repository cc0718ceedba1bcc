//! Just enough of the zip format for `torch.save` files: the central directory and stored
//! (uncompressed) entries, which is what PyTorch writes. Every count, size and offset the
//! archive declares is checked against the bytes present; nothing is reserved from a claim.

use super::quoted;

/// Most entries accepted: a checkpoint has one per storage plus a few (a TRM has about 30).
pub const MAX_ENTRIES: usize = 4096;
/// Size of a central directory record before its variable fields.
const CENTRAL_RECORD: usize = 46;
/// Size of a local header before its variable fields.
const LOCAL_HEADER: usize = 30;

/// One entry: its name and where its bytes are.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Path inside the archive (`step_1/data.pkl`, `step_1/data/0`, ...).
    pub name: String,
    /// The entry's contents.
    pub data: &'a [u8],
}

/// `len` bytes at `at`, or an error if the file ends first (offsets come from the file).
fn slice(b: &[u8], at: usize, len: usize) -> Result<&[u8], String> {
    at.checked_add(len).and_then(|end| b.get(at..end)).ok_or_else(|| "zip: truncated".to_string())
}

fn u16_at(b: &[u8], at: usize) -> Result<usize, String> {
    slice(b, at, 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, String> {
    slice(b, at, 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Lists the entries of a zip held in memory. Compressed entries, archives of more than
/// [`MAX_ENTRIES`] entries and zip64 archives (over 4 GiB, which no TRM checkpoint is) are
/// errors.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    // The end-of-central-directory record sits in the last 22 + 65535 bytes.
    let lowest = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (lowest..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("zip: no end of central directory (truncated file?)")?;
    let count = u16_at(bytes, eocd + 10)?;
    let mut at = u32_at(bytes, eocd + 16)?;
    if at == 0xffff_ffff || count == 0xffff {
        return Err("zip: zip64 archives are not supported".into());
    }
    if count > MAX_ENTRIES {
        return Err(format!("zip: {count} entries, over the limit of {MAX_ENTRIES} for a checkpoint"));
    }
    if at.checked_add(count * CENTRAL_RECORD).is_none_or(|end| end > eocd) {
        return Err(format!("zip: the central directory cannot hold the {count} entries it declares"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if slice(bytes, at, 4)? != [0x50, 0x4b, 0x01, 0x02] {
            return Err("zip: corrupt central directory".into());
        }
        let method = u16_at(bytes, at + 10)?;
        let size = u32_at(bytes, at + 20)?;
        let stored_size = u32_at(bytes, at + 24)?;
        let (name_len, extra_len, comment_len) = (u16_at(bytes, at + 28)?, u16_at(bytes, at + 30)?, u16_at(bytes, at + 32)?);
        let local = u32_at(bytes, at + 42)?;
        let name = String::from_utf8_lossy(slice(bytes, at + CENTRAL_RECORD, name_len)?).into_owned();
        if method != 0 || size != stored_size {
            return Err(format!(
                "zip: entry {} is compressed (method {method}); torch.save writes stored entries",
                quoted(&name)
            ));
        }
        if slice(bytes, local, 4).ok() != Some(&[0x50, 0x4b, 0x03, 0x04][..]) {
            return Err(format!("zip: entry {} has no local header", quoted(&name)));
        }
        // The local header has its own extra field (PyTorch pads it to align the data).
        let start = local + LOCAL_HEADER + u16_at(bytes, local + 26)? + u16_at(bytes, local + 28)?;
        let data = slice(bytes, start, size)
            .map_err(|_| format!("zip: entry {} declares {size} bytes past the end of the file", quoted(&name)))?;
        out.push(Entry { name, data });
        at += CENTRAL_RECORD + name_len + extra_len + comment_len;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A zip of stored entries (`method` 0), or with every entry marked `method`.
    pub(crate) fn zip(files: &[(&str, &[u8])], method: u16) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in files {
            let local = out.len() as u32;
            let size = (data.len() as u32).to_le_bytes();
            out.extend([0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0]);
            out.extend(method.to_le_bytes());
            out.extend([0; 8]); // time, date, crc
            out.extend(size);
            out.extend(size);
            out.extend((name.len() as u16).to_le_bytes());
            out.extend([0, 0]);
            out.extend(name.as_bytes());
            out.extend(*data);
            central.extend([0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0]);
            central.extend(method.to_le_bytes());
            central.extend([0; 8]);
            central.extend(size);
            central.extend(size);
            central.extend((name.len() as u16).to_le_bytes());
            central.extend([0; 12]); // extra, comment, disk, attributes
            central.extend(local.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let cd_at = out.len() as u32;
        let cd_len = central.len() as u32;
        out.extend(central);
        out.extend([0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
        let n = (files.len() as u16).to_le_bytes();
        out.extend(n);
        out.extend(n);
        out.extend(cd_len.to_le_bytes());
        out.extend(cd_at.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    #[test]
    fn reads_stored_entries() {
        let z = zip(&[("a/data.pkl", b"xyz"), ("a/data/0", &[1, 2, 3, 4])], 0);
        let e = entries(&z).unwrap();
        assert_eq!(e.iter().map(|e| (e.name.as_str(), e.data)).collect::<Vec<_>>(), [("a/data.pkl", &b"xyz"[..]), ("a/data/0", &[1, 2, 3, 4][..])]);
    }

    #[test]
    fn refuses_compressed_entries_and_too_many_entries() {
        let e = entries(&zip(&[("a/data.pkl", b"xyz")], 8)).unwrap_err();
        assert!(e.contains("entry \"a/data.pkl\" is compressed (method 8)"), "{e}");
        let names: Vec<String> = (0..20_000).map(|i| format!("a/data/{i}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
        let e = entries(&zip(&files, 0)).unwrap_err();
        assert!(e.contains("20000 entries, over the limit of 4096"), "{e}");
    }

    #[test]
    fn declared_counts_and_sizes_must_fit_the_file() {
        let good = zip(&[("a/data.pkl", b"xyz")], 0);
        // The end record claims 4000 entries in a directory of one.
        let mut many = good.clone();
        let eocd = many.len() - 22;
        many[eocd + 10..eocd + 12].copy_from_slice(&4000u16.to_le_bytes());
        assert!(entries(&many).unwrap_err().contains("cannot hold the 4000 entries"));
        // The entry claims 4 GiB (stored and uncompressed alike).
        let mut huge = good.clone();
        let cd = u32::from_le_bytes(huge[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
        huge[cd + 20..cd + 28].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff]);
        assert!(entries(&huge).unwrap_err().contains("declares 4294967294 bytes past the end"));
        // The local header offset points past the file.
        let mut far = good.clone();
        far[cd + 42..cd + 46].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(entries(&far).unwrap_err().contains("no local header"));
        for cut in 0..good.len() {
            assert!(entries(&good[..cut]).is_err(), "cut at {cut}");
        }
    }
}
