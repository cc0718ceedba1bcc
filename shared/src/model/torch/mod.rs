//! Reads the reference's `step_N` checkpoints (`torch.save(state_dict)`) from memory, for the
//! command line and the browser alike. The zip holds `<root>/data.pkl` (a pickle of the dict,
//! tensors pointing into storages) and one `<root>/data/<key>` file per storage.
//!
//! Nothing in the file is executed ([`pickle`]), and no size the file declares is allocated
//! before the bytes behind it are found: storages must hold exactly their declared element
//! count, and a tensor may address only elements inside its storage.

mod pickle;
mod zip;

use super::ModelError;
use super::checkpoint::{HostTensor, StateDict, element_count, element_type};

use pickle::Value;

/// Text from the file, quoted (newlines escaped) and cut short, for one-line messages.
pub(crate) fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    if cut.len() < s.len() { format!("{cut:?}...") } else { format!("{cut:?}") }
}

/// A storage class's element type, by the name safetensors gives it.
fn storage_dtype(class: &str) -> Option<&'static str> {
    Some(match class {
        "FloatStorage" => "F32",
        "BFloat16Storage" => "BF16",
        "HalfStorage" => "F16",
        "DoubleStorage" => "F64",
        "LongStorage" => "I64",
        "IntStorage" => "I32",
        "ByteStorage" => "U8",
        _ => return None,
    })
}

/// Copies a (possibly strided) tensor out of its storage, row-major. Checked first: the view
/// has no more elements than the storage (so a stride of 0 cannot multiply it) and its last
/// element lies inside the storage.
fn gather(storage: &[u8], width: usize, decode: fn(&[u8]) -> f32, offset: usize, size: &[usize], stride: &[usize]) -> Result<Vec<f32>, String> {
    if size.len() != stride.len() {
        return Err(format!("size {size:?} and stride {stride:?} differ in length"));
    }
    let elements = storage.len() / width;
    let n = element_count(size)?;
    if n > elements {
        return Err(format!("shape {size:?} has {n} elements, its storage {elements}"));
    }
    let last = size.iter().zip(stride).try_fold(offset, |at, (&d, &s)| d.saturating_sub(1).checked_mul(s)?.checked_add(at));
    if n > 0 && last.is_none_or(|l| l >= elements) {
        return Err(format!("shape {size:?} (stride {stride:?}, offset {offset}) runs past its storage of {elements} elements"));
    }
    let mut values = Vec::with_capacity(n);
    let mut index = vec![0usize; size.len()];
    for _ in 0..n {
        let element = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        values.push(decode(&storage[element * width..(element + 1) * width]));
        // Next index, last axis fastest.
        for axis in (0..size.len()).rev() {
            index[axis] += 1;
            if index[axis] < size[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(values)
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
    // Tensors may share a storage; more values in all than the file has bytes means one
    // storage viewed over and over, which would multiply it in memory.
    let mut budget = bytes.len();
    let mut sd = StateDict::default();
    for (key, value) in items {
        let Value::Str(name) = key else { return Err(err(format!("a key that is {}, not a string", key.kind()))) };
        let Value::Tensor { class, key, numel, offset, size, stride } = value else {
            return Err(err(format!("{} is {}, not a tensor", quoted(&name), value.kind())));
        };
        let dtype = storage_dtype(&class).ok_or_else(|| ModelError::Dtype { name: name.clone(), dtype: quoted(&class) })?;
        let (width, decode) = element_type(dtype).ok_or_else(|| ModelError::Dtype { name: name.clone(), dtype: dtype.into() })?;
        let path = format!("{root}data/{key}");
        let storage = entries
            .iter()
            .find(|e| e.name == path)
            .ok_or_else(|| err(format!("{name}: storage {} is missing", quoted(&path))))?;
        if numel.checked_mul(width) != Some(storage.data.len()) {
            return Err(err(format!(
                "{name}: storage {} declares {numel} elements of {width} bytes but holds {} bytes",
                quoted(&key),
                storage.data.len()
            )));
        }
        let values = gather(storage.data, width, decode, offset, &size, &stride).map_err(|m| err(format!("{name}: {m}")))?;
        budget = budget
            .checked_sub(values.len())
            .ok_or_else(|| err("the tensors hold more values than the file has bytes (a storage viewed over and over)".into()))?;
        sd.insert(&name, HostTensor { shape: size, values, stored_dtype: dtype.to_string() })?;
    }
    Ok(sd)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trm").join(name)
    }

    /// A `torch.save` zip of f32 tensors `(name, size, stride)`, all views of one storage.
    pub(crate) fn torch_file(storage: &[f32], tensors: &[(&str, &[i64], &[i64])]) -> Vec<u8> {
        let int = |v: i64| [&[b'J'][..], &(v as i32).to_le_bytes()].concat();
        let text = |s: &str| [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat();
        let ints = |vs: &[i64]| [&[b'('][..], &vs.iter().flat_map(|&v| int(v)).collect::<Vec<_>>(), b"t"].concat();
        let mut p = b"\x80\x02}(".to_vec();
        for (name, size, stride) in tensors {
            p.extend(text(name));
            p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
            p.extend([text("storage"), b"ctorch\nFloatStorage\n".to_vec(), text("0"), text("cpu"), int(storage.len() as i64)].concat());
            p.extend([&b"tQ"[..], &int(0), &ints(size), &ints(stride), b"tR"].concat());
        }
        p.extend(b"u.");
        let data: Vec<u8> = storage.iter().flat_map(|v| v.to_le_bytes()).collect();
        zip::tests::zip(&[("archive/data.pkl", &p), ("archive/data/0", &data)], 0)
    }

    #[test]
    fn reads_the_reference_fixtures_as_burn_store_does() {
        for case in ["attn", "mlpt", "learned", "bf16"] {
            let path = fixture(&format!("{case}_step_1"));
            let ours = read_state_dict("step_1", &std::fs::read(&path).unwrap()).unwrap();
            let theirs = burn_store::pytorch::PytorchReader::new(&path).unwrap().into_tensors();
            assert_eq!(ours.tensors.len(), theirs.len(), "{case}");
            for (name, snapshot) in theirs {
                let data = snapshot.to_data().unwrap();
                let t = &ours.tensors[super::super::checkpoint::canonical_name(&name)];
                assert_eq!(t.shape, data.shape.to_vec(), "{case} {name}");
                assert_eq!(t.values, data.convert::<f32>().iter::<f32>().collect::<Vec<_>>(), "{case} {name}");
            }
        }
    }

    #[test]
    fn strided_views_are_gathered_row_major() {
        let storage: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let decode = element_type("F32").unwrap().1;
        // A [3, 2] transpose of a [2, 3] row-major storage.
        let t = gather(&storage, 4, decode, 0, &[3, 2], &[1, 3]).unwrap();
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(gather(&storage, 4, decode, 1, &[6], &[1]).unwrap_err().contains("runs past its storage"));
        // A 0-d tensor is one element.
        assert_eq!(gather(&storage, 4, decode, 2, &[], &[]).unwrap(), [2.0]);
    }

    #[test]
    fn reads_a_built_file_and_refuses_crafted_sizes() {
        let sd = read_state_dict("t", &torch_file(&[1.0, 2.0, 3.0, 4.0], &[("w", &[2, 2], &[1, 2])])).unwrap();
        assert_eq!((sd.tensors["w"].shape.as_slice(), sd.tensors["w"].values.as_slice()), (&[2, 2][..], &[1.0, 3.0, 2.0, 4.0][..]));
        let cases: [(&[i64], &[i64], &str); 5] = [
            // A huge shape over a 4-element storage with stride 0: never zero-filled or repeated.
            (&[1 << 30, 1 << 30], &[0, 0], "has 1152921504606846976 elements, its storage 4"),
            (&[-1, 4], &[4, 1], "a tensor size has a negative entry -1"),
            (&[2, -2], &[2, 1], "a tensor size has a negative entry -2"),
            (&[4], &[-1], "a tensor stride has a negative entry -1"),
            (&[2, 2], &[1 << 30, 1], "runs past its storage of 4 elements"),
        ];
        for (size, stride, expected) in cases {
            let e = read_state_dict("t", &torch_file(&[0.0; 4], &[("w", size, stride)])).unwrap_err().to_string();
            assert!(e.starts_with("t: not a readable checkpoint: ") && e.contains(expected), "{size:?}/{stride:?}: {e}");
        }
        // Many tensors over one storage: the values in all may not exceed the file's bytes.
        let names: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let views: Vec<(&str, &[i64], &[i64])> = names.iter().map(|n| (n.as_str(), &[256][..], &[1][..])).collect();
        let e = read_state_dict("t", &torch_file(&[0.0; 256], &views)).unwrap_err().to_string();
        assert!(e.contains("more values than the file has bytes"), "{e}");
        // A storage whose declared element count disagrees with its bytes.
        let mut bad = torch_file(&[0.0; 4], &[("w", &[4], &[1])]);
        let at = bad.windows(5).position(|w| w == [b'J', 4, 0, 0, 0]).unwrap();
        bad[at + 1] = 9;
        let e = read_state_dict("t", &bad).unwrap_err().to_string();
        assert!(e.contains("declares 9 elements of 4 bytes but holds 16 bytes"), "{e}");
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
        assert!(pickle::read(evil).unwrap_err().contains("refuses to call \"os\".\"system\""));
    }
}
