//! The devices a training run uses on this machine: `--devices 0,1,2,3`.
//!
//! On a GPU backend an entry is a device index; on the CPU every entry is one data-parallel
//! worker (a thread over the same Flex device), and its index must name one of the cores.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Backend;
use burn::tensor::backend::{Device, DeviceId};

/// Why a device list is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceSetError {
    /// `--devices ""`.
    #[error("the device list is empty; give indices such as 0 or 0,1,2,3")]
    Empty,
    /// Not a number.
    #[error("`{0}` is not a device index (give comma-separated numbers such as 0,1,2,3)")]
    NotAnIndex(String),
    /// The same index twice.
    #[error("device {0} is listed twice")]
    Duplicate(usize),
    /// An index the machine does not have.
    #[error("device {index} does not exist: {what} has {count} (indices 0..{count})")]
    Unknown {
        /// The index asked for.
        index: usize,
        /// What was counted (`this CUDA driver`, `the CPU`).
        what: String,
        /// How many there are.
        count: usize,
    },
}

/// The local device indices of a run, in the order the batch is split over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSet {
    indices: Vec<usize>,
}

impl Default for DeviceSet {
    /// Device 0 alone.
    fn default() -> DeviceSet {
        DeviceSet { indices: vec![0] }
    }
}

impl DeviceSet {
    /// `n` CPU workers (`--workers n`): indices `0..n` (at least one).
    pub fn workers(n: usize) -> DeviceSet {
        DeviceSet { indices: (0..n.max(1)).collect() }
    }

    /// Device `index` alone.
    pub fn one(index: usize) -> DeviceSet {
        DeviceSet { indices: vec![index] }
    }

    /// The indices, in order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// How many local devices (data-parallel workers in this process).
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Never true: a parsed set holds at least one device.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Checks every index against the `count` devices of `what`.
    pub fn check_against(&self, count: usize, what: &str) -> Result<(), DeviceSetError> {
        match self.indices.iter().find(|&&i| i >= count) {
            Some(&index) => Err(DeviceSetError::Unknown { index, what: what.to_string(), count }),
            None => Ok(()),
        }
    }
}

impl FromStr for DeviceSet {
    type Err = DeviceSetError;

    /// `0,1,2,3` (spaces allowed around entries).
    fn from_str(s: &str) -> Result<DeviceSet, DeviceSetError> {
        if s.trim().is_empty() {
            return Err(DeviceSetError::Empty);
        }
        let mut indices = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let index: usize = part.parse().map_err(|_| DeviceSetError::NotAnIndex(part.to_string()))?;
            if indices.contains(&index) {
                return Err(DeviceSetError::Duplicate(index));
            }
            indices.push(index);
        }
        Ok(DeviceSet { indices })
    }
}

impl fmt::Display for DeviceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.indices.iter().map(usize::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The backend's devices for `set`: `main`'s kind of device with each index (on the CPU, the
/// one Flex device once per entry).
pub fn backend_devices<B: Backend>(main: &B::Device, set: &DeviceSet) -> Vec<B::Device> {
    let type_id = main.to_id().type_id;
    set.indices().iter().map(|&i| B::Device::from_id(DeviceId::new(type_id, i as u16))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_indices_in_order() {
        let d: DeviceSet = "2, 0,1".parse().unwrap();
        assert_eq!(d.indices(), &[2, 0, 1]);
        assert_eq!(d.to_string(), "2,0,1");
        assert_eq!(DeviceSet::workers(3).indices(), &[0, 1, 2]);
        assert_eq!(DeviceSet::workers(0).indices(), &[0]);
    }

    #[test]
    fn refuses_empty_duplicate_and_non_numbers() {
        assert_eq!("".parse::<DeviceSet>(), Err(DeviceSetError::Empty));
        assert_eq!(" ".parse::<DeviceSet>(), Err(DeviceSetError::Empty));
        assert_eq!("0,1,0".parse::<DeviceSet>(), Err(DeviceSetError::Duplicate(0)));
        assert_eq!("0,,1".parse::<DeviceSet>(), Err(DeviceSetError::NotAnIndex(String::new())));
        assert_eq!("0,gpu1".parse::<DeviceSet>(), Err(DeviceSetError::NotAnIndex("gpu1".into())));
        assert_eq!("-1".parse::<DeviceSet>(), Err(DeviceSetError::NotAnIndex("-1".into())));
    }

    #[test]
    fn unknown_index_names_the_count() {
        let d: DeviceSet = "0,3".parse().unwrap();
        assert!(d.check_against(4, "the CPU").is_ok());
        let err = d.check_against(2, "this CUDA driver").unwrap_err();
        assert_eq!(err.to_string(), "device 3 does not exist: this CUDA driver has 2 (indices 0..2)");
    }
}
