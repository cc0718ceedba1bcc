//! Just enough of the zip format for `torch.save` files: the central directory and stored
//! (uncompressed) entries, which is what PyTorch writes.

/// One entry: its name and where its bytes are.
pub struct Entry<'a> {
    /// Path inside the archive (`step_1/data.pkl`, `step_1/data/0`, ...).
    pub name: String,
    /// The entry's contents.
    pub data: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Result<usize, String> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize).ok_or_else(|| "zip: truncated".to_string())
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, String> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize).ok_or_else(|| "zip: truncated".to_string())
}

/// Lists the entries of a zip held in memory. Compressed entries and zip64 archives
/// (over 4 GiB, which no TRM checkpoint is) are errors.
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
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if bytes.get(at..at + 4) != Some(&[0x50, 0x4b, 0x01, 0x02]) {
            return Err("zip: corrupt central directory".into());
        }
        let method = u16_at(bytes, at + 10)?;
        let size = u32_at(bytes, at + 20)?;
        let stored_size = u32_at(bytes, at + 24)?;
        let (name_len, extra_len, comment_len) = (u16_at(bytes, at + 28)?, u16_at(bytes, at + 30)?, u16_at(bytes, at + 32)?);
        let local = u32_at(bytes, at + 42)?;
        let name = bytes.get(at + 46..at + 46 + name_len).ok_or("zip: truncated")?;
        let name = String::from_utf8_lossy(name).into_owned();
        if method != 0 || size != stored_size {
            return Err(format!("zip: entry {name} is compressed (method {method}); torch.save stores entries"));
        }
        if bytes.get(local..local + 4) != Some(&[0x50, 0x4b, 0x03, 0x04]) {
            return Err(format!("zip: entry {name} has no local header"));
        }
        // The local header has its own extra field (PyTorch pads it to align the data).
        let start = local + 30 + u16_at(bytes, local + 26)? + u16_at(bytes, local + 28)?;
        let data = bytes.get(start..start + size).ok_or_else(|| format!("zip: entry {name} is truncated"))?;
        out.push(Entry { name, data });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}
