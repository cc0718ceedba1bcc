//! A pickle reader for PyTorch state dicts that builds data and never runs code: only the
//! opcodes `torch.save` writes for a dict of tensors are known, and only the globals that
//! rebuild tensors and ordered dicts are accepted; anything else is an error naming it.

use std::collections::HashMap;

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
    /// A storage reference (`persistent_id`): its dtype (from the storage class) and key.
    Storage { class: String, key: String },
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    Tensor { class: String, key: String, offset: usize, size: Vec<usize>, stride: Vec<usize> },
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.bytes.get(self.at..self.at + n).ok_or("pickle: truncated")?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn uint(&mut self, n: usize) -> Result<u64, String> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |acc, &b| (acc << 8) | b as u64))
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

fn as_usizes(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(format!("pickle: {what} holds {i:?}")),
            })
            .collect(),
        _ => Err(format!("pickle: {what} is {v:?}")),
    }
}

/// Applies a callable the reader knows to its arguments.
fn call(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &callable else {
        return Err(format!("pickle: calls {callable:?}, which is not a known global"));
    };
    let Value::Tuple(args) = args else { return Err("pickle: REDUCE without an argument tuple".into()) };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(Value::Storage { class, key }), Some(Value::Int(offset)), Some(size), Some(stride)) =
                (args.first(), args.get(1), args.get(2), args.get(3))
            else {
                return Err("pickle: _rebuild_tensor_v2 with unexpected arguments".into());
            };
            Ok(Value::Tensor {
                class: class.clone(),
                key: key.clone(),
                offset: usize::try_from(*offset).map_err(|_| "pickle: negative storage offset")?,
                size: as_usizes(size, "a tensor size")?,
                stride: as_usizes(stride, "a tensor stride")?,
            })
        }
        // nn.Parameter around a tensor.
        ("torch._utils", "_rebuild_parameter") => args.into_iter().next().ok_or_else(|| "pickle: empty _rebuild_parameter".into()),
        _ => Err(format!("pickle: refuses to call {module}.{name} (only tensors and dicts are read)")),
    }
}

/// Reads a pickle into a [`Value`].
pub fn read(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { bytes, at: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u64, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| "pickle: stack underflow".to_string());
    let pop_mark = |stack: &mut Vec<Value>, marks: &mut Vec<usize>| -> Result<Vec<Value>, String> {
        let m = marks.pop().ok_or("pickle: no MARK")?;
        if m > stack.len() {
            return Err("pickle: MARK past the stack".into());
        }
        Ok(stack.split_off(m))
    };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            } // PROTO
            0x95 => {
                r.take(8)?;
            } // FRAME
            b'.' => return pop(&mut stack),
            b'(' => marks.push(stack.len()),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(r.uint(1)? as i64)),
            b'M' => stack.push(Value::Int(r.uint(2)? as i64)),
            b'J' => stack.push(Value::Int(r.uint(4)? as u32 as i32 as i64)),
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
                stack.push(Value::Int(v));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().map_err(|_| "pickle: truncated")?))),
            b'X' => {
                let n = r.uint(4)? as usize;
                stack.push(Value::Str(r.text(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.text(n)?));
            }
            0x8d => {
                let n = r.uint(8)? as usize;
                stack.push(Value::Str(r.text(n)?));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err("pickle: STACK_GLOBAL without two strings".into()),
                }
            }
            b'q' => {
                let k = r.uint(1)?;
                memo.insert(k, stack.last().cloned().ok_or("pickle: empty stack")?);
            }
            b'r' => {
                let k = r.uint(4)?;
                memo.insert(k, stack.last().cloned().ok_or("pickle: empty stack")?);
            }
            0x94 => {
                let k = memo.len() as u64;
                memo.insert(k, stack.last().cloned().ok_or("pickle: empty stack")?);
            }
            b'h' | b'j' => {
                let k = if op == b'h' { r.uint(1)? } else { r.uint(4)? };
                stack.push(memo.get(&k).cloned().ok_or_else(|| format!("pickle: memo {k} unset"))?);
            }
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("pickle: stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'Q' => {
                // BINPERSID: ('storage', StorageClass, key, location, numel).
                let pid = pop(&mut stack)?;
                let Value::Tuple(items) = pid else { return Err("pickle: persistent id is not a tuple".into()) };
                match items.as_slice() {
                    [Value::Str(kind), Value::Global(_, class), Value::Str(key), ..] if kind == "storage" => {
                        stack.push(Value::Storage { class: class.clone(), key: key.clone() })
                    }
                    _ => return Err(format!("pickle: unknown persistent id {items:?}")),
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(call(callable, args)?);
            }
            b'b' => {
                // BUILD: state for an OrderedDict (its metadata) is dropped.
                pop(&mut stack)?;
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    vec![k, v]
                } else {
                    pop_mark(&mut stack, &mut marks)?
                };
                let Some(Value::Dict(d)) = stack.last_mut() else { return Err("pickle: SETITEM(S) on a non-dict".into()) };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            b'a' | b'e' => {
                let items = if op == b'a' { vec![pop(&mut stack)?] } else { pop_mark(&mut stack, &mut marks)? };
                let Some(Value::List(l)) = stack.last_mut() else { return Err("pickle: APPEND(S) on a non-list".into()) };
                l.extend(items);
            }
            _ => return Err(format!("pickle: unsupported opcode 0x{op:02x} at byte {}", r.at - 1)),
        }
    }
}
