//! Reads the reference's `step_N` checkpoints (`torch.save(state_dict)`) from memory, for the
//! browser: burn-store's reader opens files by path, which a page cannot. The zip holds
//! `<root>/data.pkl` (a pickle of the dict, tensors pointing into storages) and one
//! `<root>/data/<key>` file per storage. Nothing in the file is executed ([`pickle`]).

mod pickle;
mod zip;

use trm_shared::model::{HostTensor, ModelError, StateDict};

use pickle::Value;

/// A storage class's element: the name our state dicts report, its width, and a decoder.
fn dtype(class: &str) -> Option<(&'static str, usize, fn(&[u8]) -> f32)> {
    Some(match class {
        "FloatStorage" => ("F32", 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "BFloat16Storage" => ("BF16", 2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        "HalfStorage" => ("F16", 2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        "DoubleStorage" => ("F64", 8, |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32),
        "LongStorage" => ("I64", 8, |b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32),
        "IntStorage" => ("I32", 4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        "ByteStorage" => ("U8", 1, |b| b[0] as f32),
        _ => return None,
    })
}

/// Copies a (possibly strided) tensor out of its storage, row-major.
fn gather(storage: &[u8], width: usize, decode: fn(&[u8]) -> f32, offset: usize, size: &[usize], stride: &[usize]) -> Option<Vec<f32>> {
    if size.len() != stride.len() {
        return None;
    }
    let n: usize = size.iter().product();
    let mut values = Vec::with_capacity(n);
    let mut index = vec![0usize; size.len()];
    for _ in 0..n {
        let element = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        values.push(decode(storage.get(element * width..(element + 1) * width)?));
        // Next index, last axis fastest.
        for axis in (0..size.len()).rev() {
            index[axis] += 1;
            if index[axis] < size[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Some(values)
}

/// Reads a `torch.save` zip held in memory into a state dict (canonical names, f32 values).
pub fn read_state_dict(source_name: &str, bytes: &[u8]) -> Result<StateDict, ModelError> {
    let err = |message: String| ModelError::Format { source_name: source_name.to_string(), message };
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(err("a legacy (pre-1.6, non-zip) PyTorch file: save it again with a current torch.save".into()));
    }
    let entries = zip::entries(bytes).map_err(err)?;
    let pkl = entries.iter().find(|e| e.name.ends_with("data.pkl")).ok_or_else(|| err("no data.pkl in the archive".into()))?;
    let root = pkl.name.trim_end_matches("data.pkl").to_string();
    if let Some(order) = entries.iter().find(|e| e.name == format!("{root}byteorder"))
        && order.data != b"little"
    {
        return Err(err("a big-endian checkpoint".into()));
    }
    let Value::Dict(items) = pickle::read(pkl.data).map_err(err)? else {
        return Err(err("the pickle is not a dict of tensors".into()));
    };
    let mut sd = StateDict::default();
    for (key, value) in items {
        let Value::Str(name) = key else { return Err(err(format!("a key that is not a string: {key:?}"))) };
        let Value::Tensor { class, key, offset, size, stride } = value else {
            return Err(err(format!("{name} is not a tensor")));
        };
        let (stored, width, decode) =
            dtype(&class).ok_or_else(|| ModelError::Dtype { name: name.clone(), dtype: class.clone() })?;
        let path = format!("{root}data/{key}");
        let storage = entries.iter().find(|e| e.name == path).ok_or_else(|| err(format!("{name}: storage {path} is missing")))?;
        let values = gather(storage.data, width, decode, offset, &size, &stride)
            .ok_or_else(|| err(format!("{name}: shape {size:?} (stride {stride:?}, offset {offset}) runs past its storage")))?;
        sd.insert(&name, HostTensor { shape: size, values, stored_dtype: stored.to_string() })?;
    }
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/trm").join(name)
    }

    #[test]
    fn reads_the_reference_fixtures_as_burn_store_does() {
        for case in ["attn", "mlpt", "learned", "bf16"] {
            let path = fixture(&format!("{case}_step_1"));
            let bytes = std::fs::read(&path).unwrap();
            let ours = read_state_dict("step_1", &bytes).unwrap();
            let theirs = StateDict::read(&path).unwrap();
            assert_eq!(ours, theirs, "{case}");
        }
    }

    #[test]
    fn strided_views_are_gathered_row_major() {
        let storage: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let decode = dtype("FloatStorage").unwrap().2;
        // A [3, 2] transpose of a [2, 3] row-major storage.
        let t = gather(&storage, 4, decode, 0, &[3, 2], &[1, 3]).unwrap();
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(gather(&storage, 4, decode, 1, &[6], &[1]).is_none());
    }

    #[test]
    fn damaged_files_are_errors() {
        let bytes = std::fs::read(fixture("attn_step_1")).unwrap();
        for cut in [10, bytes.len() / 2, bytes.len() - 30] {
            let e = read_state_dict("step_1", &bytes[..cut]).unwrap_err().to_string();
            assert!(e.starts_with("step_1: not a readable checkpoint"), "{e}");
        }
        let e = read_state_dict("old.pt", &[0x80, 2, b'}', b'.']).unwrap_err().to_string();
        assert!(e.contains("legacy"), "{e}");
        // A pickle that asks for another callable is refused, not run.
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        assert!(pickle::read(evil).unwrap_err().contains("refuses to call os.system"));
    }
}
