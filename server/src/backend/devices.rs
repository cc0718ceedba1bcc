//! The devices a training run uses: `--devices 0,1,2,3` on this machine and, for multi-node
//! runs, where this process sits among the nodes (`--nodes`, `--node-rank`, `--orchestrator`).
//!
//! On a GPU backend an entry is a device index; on the CPU every entry is one data-parallel
//! worker (a thread over the same Flex device), and its index must name one of the cores.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Backend;
use burn::tensor::backend::{Device, DeviceId};

/// Why a device list or node setting is unusable.
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
    /// A multi-node setting that does not fit.
    #[error("{0}")]
    Nodes(String),
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

/// This process's place in a multi-node run joined through burn-collective's global
/// orchestrator (`trm orchestrator`). Every node runs the same config and the same number of
/// local devices; the global batch is split over `nodes × devices` workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Nodes in the run.
    pub nodes: u32,
    /// This node's rank, `0..nodes`: which slice of every global batch it trains on.
    pub rank: u32,
    /// The orchestrator, `ws://HOST:PORT`.
    pub orchestrator: String,
    /// Where the other nodes reach this one, `ws://HOST:PORT`.
    pub address: String,
    /// The port of `address`, which this node listens on for tensor transfers.
    pub data_port: u16,
}

impl NodeSpec {
    /// Checks the settings and derives the data port from `address`.
    pub fn new(nodes: u32, rank: u32, orchestrator: &str, address: &str) -> Result<NodeSpec, DeviceSetError> {
        if nodes < 2 {
            return Err(DeviceSetError::Nodes(format!("--nodes {nodes}: a multi-node run needs at least 2 nodes (leave --nodes out for one machine)")));
        }
        if rank >= nodes {
            return Err(DeviceSetError::Nodes(format!("--node-rank {rank} is out of range for --nodes {nodes} (0..{nodes})")));
        }
        ws_port(orchestrator, "--orchestrator")?;
        let data_port = ws_port(address, "--node-address")?;
        Ok(NodeSpec { nodes, rank, orchestrator: orchestrator.to_string(), address: address.to_string(), data_port })
    }
}

/// The port of a `ws://HOST:PORT` address.
fn ws_port(addr: &str, flag: &str) -> Result<u16, DeviceSetError> {
    let bad = || DeviceSetError::Nodes(format!("{flag} {addr}: expected ws://HOST:PORT"));
    let rest = addr.strip_prefix("ws://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.contains('/') {
        return Err(bad());
    }
    port.parse().map_err(|_| bad())
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

    #[test]
    fn node_settings_are_checked() {
        let n = NodeSpec::new(2, 1, "ws://10.0.0.1:3000", "ws://10.0.0.2:3001").unwrap();
        assert_eq!(n.data_port, 3001);
        assert!(NodeSpec::new(1, 0, "ws://a:1", "ws://b:2").is_err());
        assert!(NodeSpec::new(2, 2, "ws://a:1", "ws://b:2").unwrap_err().to_string().contains("out of range"));
        assert!(NodeSpec::new(2, 0, "10.0.0.1:3000", "ws://b:2").unwrap_err().to_string().contains("--orchestrator"));
        assert!(NodeSpec::new(2, 0, "ws://a:1", "ws://b:port").unwrap_err().to_string().contains("--node-address"));
    }
}
