//! A pickle reader for PyTorch state dicts that builds data and never runs code: only the
//! opcodes `torch.save` writes for a dict of tensors are known, and only the globals that
//! rebuild tensors and ordered dicts are accepted; anything else is an error naming it.
//!
//! A crafted pickle must not exhaust memory or the stack: containers nest at most
//! [`MAX_DEPTH`] deep (dropping a value recurses), and all values built, each memo copy
//! counted in full (the memo copies where Python shares), stay under [`MAX_VALUES`].

use std::collections::HashMap;

use super::quoted;

/// Deepest nesting of containers accepted; a state dict needs about 4.
pub const MAX_DEPTH: usize = 64;
/// Most values (plus 1 per 32 bytes of text) one pickle may build, memo copies included; a
/// state dict of a few hundred tensors builds a few thousand.
pub const MAX_VALUES: usize = 1 << 20;

/// A value of the pickle, as far as state dicts need.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A global named by the pickle (`module`, `name`), not imported: only matched.
    Global(String, String),
    /// A storage reference (`persistent_id`): its dtype (from the storage class), key and
    /// declared element count.
    Storage { class: String, key: String, numel: usize },
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    Tensor { class: String, key: String, numel: usize, offset: usize, size: Vec<usize>, stride: Vec<usize> },
}

impl Value {
    /// What kind of value this is, for messages (a value itself may be huge).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(..) => "a global",
            Value::Storage { .. } => "a storage",
            Value::Tensor { .. } => "a tensor",
        }
    }
}

/// A value on the stack or in the memo, with its nesting depth and its cost (values, plus
/// text by 32 bytes) for the limits.
#[derive(Clone)]
struct Item {
    value: Value,
    depth: usize,
    cost: usize,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.at.checked_add(n).and_then(|end| self.bytes.get(self.at..end)).ok_or("pickle: truncated")?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn uint(&mut self, n: usize) -> Result<u64, String> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }
    /// A length prefix of `n` bytes (it cannot exceed the bytes left; `take` checks).
    fn len(&mut self, n: usize) -> Result<usize, String> {
        usize::try_from(self.uint(n)?).map_err(|_| "pickle: truncated".to_string())
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("pickle: truncated")?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "pickle: invalid UTF-8 string".to_string())
    }
}

/// The value stack, marks and memo, with the limits.
#[derive(Default)]
struct Machine {
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<u64, Item>,
    /// Cost of everything built so far.
    built: usize,
}

impl Machine {
    /// Counts `cost` more towards [`MAX_VALUES`].
    fn spend(&mut self, cost: usize) -> Result<(), String> {
        self.built = self.built.saturating_add(cost);
        if self.built > MAX_VALUES {
            return Err(format!("pickle: builds more than {MAX_VALUES} values (a memo or nesting bomb?)"));
        }
        Ok(())
    }

    /// Pushes a value holding no other values.
    fn leaf(&mut self, value: Value) -> Result<(), String> {
        let cost = 1 + match &value {
            Value::Str(s) => s.len() / 32,
            Value::Global(m, n) => (m.len() + n.len()) / 32,
            _ => 0,
        };
        self.spend(cost)?;
        self.stack.push(Item { value, depth: 0, cost });
        Ok(())
    }

    /// Pushes a container built from `items`.
    fn container(&mut self, items: Vec<Item>, make: impl FnOnce(Vec<Value>) -> Value) -> Result<(), String> {
        self.spend(1)?;
        let depth = 1 + items.iter().map(|i| i.depth).max().unwrap_or(0);
        check_depth(depth)?;
        let cost = 1 + items.iter().map(|i| i.cost).sum::<usize>();
        self.stack.push(Item { value: make(items.into_iter().map(|i| i.value).collect()), depth, cost });
        Ok(())
    }

    fn pop(&mut self) -> Result<Item, String> {
        self.stack.pop().ok_or_else(|| "pickle: stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>, String> {
        let m = self.marks.pop().ok_or("pickle: no MARK")?;
        if m > self.stack.len() {
            return Err("pickle: MARK past the stack".into());
        }
        Ok(self.stack.split_off(m))
    }

    /// A copy of the top of the stack into the memo (Python would share it).
    fn memo_put(&mut self, key: u64) -> Result<(), String> {
        let top = self.stack.last().ok_or("pickle: empty stack")?;
        let cost = top.cost;
        self.spend(cost)?;
        let top = self.stack.last().cloned().ok_or("pickle: empty stack")?;
        self.memo.insert(key, top);
        Ok(())
    }

    /// A copy of a memo entry onto the stack.
    fn memo_get(&mut self, key: u64) -> Result<(), String> {
        let cost = self.memo.get(&key).ok_or_else(|| format!("pickle: memo {key} unset"))?.cost;
        self.spend(cost)?;
        let item = self.memo[&key].clone();
        self.stack.push(item);
        Ok(())
    }

    /// Adds `items` to the container on top of the stack with `add`.
    fn extend_top(&mut self, items: Vec<Item>, add: impl FnOnce(&mut Value, Vec<Value>) -> Result<(), String>) -> Result<(), String> {
        let top = self.stack.last_mut().ok_or("pickle: empty stack")?;
        let depth = top.depth.max(1 + items.iter().map(|i| i.depth).max().unwrap_or(0));
        check_depth(depth)?;
        top.depth = depth;
        top.cost += items.iter().map(|i| i.cost).sum::<usize>();
        add(&mut top.value, items.into_iter().map(|i| i.value).collect())
    }
}

fn check_depth(depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("pickle: containers nest more than {MAX_DEPTH} deep"));
    }
    Ok(())
}

fn as_usizes(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => usize::try_from(*n).map_err(|_| format!("pickle: {what} has a negative entry {n}")),
                other => Err(format!("pickle: {what} holds {}", other.kind())),
            })
            .collect(),
        _ => Err(format!("pickle: {what} is {}", v.kind())),
    }
}

/// Applies a callable the reader knows to its arguments.
fn call(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &callable else {
        return Err(format!("pickle: calls {}, which is not a known global", callable.kind()));
    };
    let Value::Tuple(args) = args else { return Err("pickle: REDUCE without an argument tuple".into()) };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(Value::Storage { class, key, numel }), Some(Value::Int(offset)), Some(size), Some(stride)) =
                (args.first(), args.get(1), args.get(2), args.get(3))
            else {
                return Err("pickle: _rebuild_tensor_v2 with unexpected arguments".into());
            };
            Ok(Value::Tensor {
                class: class.clone(),
                key: key.clone(),
                numel: *numel,
                offset: usize::try_from(*offset).map_err(|_| "pickle: negative storage offset")?,
                size: as_usizes(size, "a tensor size")?,
                stride: as_usizes(stride, "a tensor stride")?,
            })
        }
        // nn.Parameter around a tensor.
        ("torch._utils", "_rebuild_parameter") => args.into_iter().next().ok_or_else(|| "pickle: empty _rebuild_parameter".into()),
        _ => Err(format!(
            "pickle: refuses to call {}.{} (only tensors and dicts are read)",
            quoted(module),
            quoted(name)
        )),
    }
}

/// Reads a pickle into a [`Value`].
pub fn read(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { bytes, at: 0 };
    let mut m = Machine::default();
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            } // PROTO
            0x95 => {
                r.take(8)?;
            } // FRAME
            b'.' => return Ok(m.pop()?.value),
            b'(' => m.marks.push(m.stack.len()),
            b'}' => m.leaf(Value::Dict(Vec::new()))?,
            b']' => m.leaf(Value::List(Vec::new()))?,
            b')' => m.leaf(Value::Tuple(Vec::new()))?,
            b'N' => m.leaf(Value::None)?,
            0x88 => m.leaf(Value::Bool(true))?,
            0x89 => m.leaf(Value::Bool(false))?,
            b'K' => m.leaf(Value::Int(r.uint(1)? as i64))?,
            b'M' => m.leaf(Value::Int(r.uint(2)? as i64))?,
            b'J' => m.leaf(Value::Int(r.uint(4)? as u32 as i32 as i64))?,
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                if n > 8 {
                    return Err("pickle: integer too large".into());
                }
                let mut v: i64 = b.iter().rev().fold(0i64, |acc, &x| (acc << 8) | x as i64);
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                m.leaf(Value::Int(v))?;
            }
            b'G' => m.leaf(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().map_err(|_| "pickle: truncated")?)))?,
            b'X' => {
                let n = r.len(4)?;
                m.leaf(Value::Str(r.text(n)?))?;
            }
            0x8c => {
                let n = r.len(1)?;
                m.leaf(Value::Str(r.text(n)?))?;
            }
            0x8d => {
                let n = r.len(8)?;
                m.leaf(Value::Str(r.text(n)?))?;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                m.leaf(Value::Global(module, name))?;
            }
            0x93 => {
                let name = m.pop()?.value;
                let module = m.pop()?.value;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => m.leaf(Value::Global(module, name))?,
                    _ => return Err("pickle: STACK_GLOBAL without two strings".into()),
                }
            }
            b'q' => {
                let k = r.uint(1)?;
                m.memo_put(k)?;
            }
            b'r' => {
                let k = r.uint(4)?;
                m.memo_put(k)?;
            }
            0x94 => {
                let k = m.memo.len() as u64;
                m.memo_put(k)?;
            }
            b'h' | b'j' => {
                let k = if op == b'h' { r.uint(1)? } else { r.uint(4)? };
                m.memo_get(k)?;
            }
            b't' => {
                let items = m.pop_mark()?;
                m.container(items, Value::Tuple)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if m.stack.len() < n {
                    return Err("pickle: stack underflow".into());
                }
                let items = m.stack.split_off(m.stack.len() - n);
                m.container(items, Value::Tuple)?;
            }
            b'Q' => {
                // BINPERSID: ('storage', StorageClass, key, location, numel).
                let pid = m.pop()?.value;
                let Value::Tuple(items) = pid else { return Err("pickle: persistent id is not a tuple".into()) };
                match items.as_slice() {
                    [Value::Str(kind), Value::Global(_, class), Value::Str(key), _, Value::Int(numel)] if kind == "storage" => {
                        let numel = usize::try_from(*numel).map_err(|_| format!("pickle: storage {} has a negative size", quoted(key)))?;
                        m.leaf(Value::Storage { class: class.clone(), key: key.clone(), numel })?
                    }
                    _ => return Err(format!("pickle: unknown persistent id (a tuple of {} values)", items.len())),
                }
            }
            b'R' => {
                let args = m.pop()?;
                let callable = m.pop()?;
                let value = call(callable.value, args.value)?;
                m.spend(1)?;
                m.stack.push(Item { value, depth: args.depth, cost: args.cost + 1 });
            }
            b'b' => {
                // BUILD: state for an OrderedDict (its metadata) is dropped.
                m.pop()?;
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = m.pop()?;
                    let k = m.pop()?;
                    vec![k, v]
                } else {
                    m.pop_mark()?
                };
                m.extend_top(items, |top, values| {
                    let Value::Dict(d) = top else { return Err("pickle: SETITEM(S) on a non-dict".into()) };
                    let mut it = values.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                    Ok(())
                })?;
            }
            b'a' | b'e' => {
                let items = if op == b'a' { vec![m.pop()?] } else { m.pop_mark()? };
                m.extend_top(items, |top, values| {
                    let Value::List(l) = top else { return Err("pickle: APPEND(S) on a non-list".into()) };
                    l.extend(values);
                    Ok(())
                })?;
            }
            _ => return Err(format!("pickle: unsupported opcode 0x{op:02x} at byte {}", r.at - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containers_and_memo_references() {
        // {'a': [1, 2], 'b': <memo 0>}, protocol 2.
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a](K\x01K\x02eq\x01X\x01\x00\x00\x00bh\x01u.";
        let v = read(p).unwrap();
        let list = Value::List(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(v, Value::Dict(vec![(Value::Str("a".into()), list.clone()), (Value::Str("b".into()), list)]));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // About 1 MB of TUPLE1 around an empty list: a tuple nested a million deep, which
        // dropping (or printing) would recurse through.
        let mut p = vec![0x80, 2, b']'];
        p.extend(std::iter::repeat_n(0x85, 1 << 20));
        p.push(b'.');
        let e = read(&p).unwrap_err();
        assert!(e.contains("nest more than 64 deep"), "{e}");
        // Tuples of tuples, built with MARK ... TUPLE.
        let n = 500_000;
        // Tuples of tuples, built with MARK ... TUPLE.
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b'(', n));
        p.extend(std::iter::repeat_n(b't', n));
        p.push(b'.');
        assert!(read(&p).unwrap_err().contains("nest more than 64 deep"));
    }

    #[test]
    fn memo_bombs_are_refused() {
        // x = []; then 60 times x = (x, x) through the memo: 2^60 values if copied.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..60 {
            p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
        }
        p.push(b'.');
        let e = read(&p).unwrap_err();
        assert!(e.contains("builds more than"), "{e}");
        // A long string memoized, then copied many times.
        let mut p = vec![0x80, 2, b'X'];
        p.extend(100_000u32.to_le_bytes());
        p.extend(vec![b'x'; 100_000]);
        p.extend([b'q', 0, b']']);
        p.extend(std::iter::repeat_n([b'h', 0, b'a'], 20_000).flatten());
        p.push(b'.');
        assert!(read(&p).unwrap_err().contains("builds more than"));
    }

    #[test]
    fn refuses_negative_sizes_and_unknown_calls() {
        // _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 4) as pid, 0, (-1,), (1,)).
        let tensor = |size: &[u8]| {
            let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00".to_vec();
            p.extend(size);
            p.extend(b"K\x01\x85tR.");
            p
        };
        let t = read(&tensor(b"K\x04\x85")).unwrap();
        assert!(matches!(t, Value::Tensor { ref size, numel: 4, .. } if size == &[4]), "{t:?}");
        let e = read(&tensor(b"J\xff\xff\xff\xff\x85")).unwrap_err();
        assert!(e.contains("a tensor size has a negative entry -1"), "{e}");
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        assert!(read(evil).unwrap_err().contains("refuses to call \"os\".\"system\""));
        // A string length that would overflow the cursor.
        assert!(read(b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff").unwrap_err().contains("truncated"));
    }
}
