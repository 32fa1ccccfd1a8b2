//! Which shape of the pair engine runs on an adapter: chosen once per [`crate::Gpu`] from
//! the adapter's type and features, overridable, never tuned at run time (so a given
//! configuration gives the same bits on every run).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The environment variable that overrides the automatic choice (`rows`, `rows-direct`,
/// `tile`), read by [`crate::GpuOptions::default`].
pub const ENGINE_ENV: &str = "METRIC_LOSS_ENGINE";

/// How the pair engine (the in-batch losses' all-pairs work) stages rows and columns.
///
/// Every configuration computes the same losses under the same tolerance rule; they differ
/// in speed per adapter. The test suite runs each of them on lavapipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineConfig {
    /// Each invocation holds two rows and their gradients in registers; each column is loaded
    /// once per subgroup (lane l loads a slice) and shared with `subgroupBroadcast`. Kernels
    /// are generated for a bounded set of row widths (up to 128 values; wider rows run on
    /// the staged shape of [`EngineConfig::Tile`]). Best where every per-invocation load is
    /// paid per lane: software adapters (lavapipe). Needs `Features::SUBGROUP` and a fixed
    /// subgroup size.
    Rows,
    /// As [`EngineConfig::Rows`], each invocation loading the column itself: no subgroup
    /// operations, for CPU adapters without `SUBGROUP`.
    RowsDirect,
    /// Tiles staged in workgroup memory: per 128-row block and 16-column tile, S as a tile
    /// GEMM (a K-loop over the row staging 8 dims of both tiles, an 8×4 register micro-tile
    /// per invocation), the family's map over the tile, and the gradient W·X_J as a second
    /// tile GEMM (an 8×4 micro-tile per 16-dim chunk). Any row width, no subgroups. The
    /// default on hardware GPUs.
    Tile,
}

impl EngineConfig {
    /// Every configuration, in the order the tests and `bench --tune` visit them.
    pub const ALL: [EngineConfig; 3] = [
        EngineConfig::Rows,
        EngineConfig::RowsDirect,
        EngineConfig::Tile,
    ];

    /// The name [`ENGINE_ENV`] and the CLI's `--engine` take.
    pub fn name(self) -> &'static str {
        match self {
            EngineConfig::Rows => "rows",
            EngineConfig::RowsDirect => "rows-direct",
            EngineConfig::Tile => "tile",
        }
    }

    /// The automatic choice for an adapter: register rows with subgroup broadcasts on a CPU
    /// adapter with a fixed subgroup size, direct register rows on a CPU adapter without,
    /// staged tiles elsewhere.
    pub fn automatic(info: &wgpu::AdapterInfo, features: wgpu::Features) -> Self {
        if info.device_type != wgpu::DeviceType::Cpu {
            return EngineConfig::Tile;
        }
        if Self::broadcast_lanes(info, features).is_some() {
            EngineConfig::Rows
        } else {
            EngineConfig::RowsDirect
        }
    }

    /// The subgroup size [`EngineConfig::Rows`] is generated for, if the device can run it:
    /// `SUBGROUP` and one subgroup size (the broadcast's lane arithmetic is fixed at
    /// generation time).
    pub(crate) fn broadcast_lanes(
        info: &wgpu::AdapterInfo,
        features: wgpu::Features,
    ) -> Option<u32> {
        let fixed = info.subgroup_min_size == info.subgroup_max_size;
        (features.contains(wgpu::Features::SUBGROUP) && fixed && info.subgroup_min_size >= 1)
            .then_some(info.subgroup_min_size)
    }
}

impl fmt::Display for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineConfig {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or(Error::OptionConflict {
                option: "engine",
                reason: "the engine configuration is one of rows, rows-direct, tile",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(device_type: wgpu::DeviceType, lanes: (u32, u32)) -> wgpu::AdapterInfo {
        let mut info = wgpu::AdapterInfo::new(device_type, wgpu::Backend::Vulkan);
        info.subgroup_min_size = lanes.0;
        info.subgroup_max_size = lanes.1;
        info
    }

    #[test]
    fn the_automatic_choice_follows_the_adapter() {
        use wgpu::DeviceType::*;
        let sub = wgpu::Features::SUBGROUP;
        let none = wgpu::Features::empty();
        assert_eq!(
            EngineConfig::automatic(&adapter(Cpu, (8, 8)), sub),
            EngineConfig::Rows
        );
        // No subgroups, or a subgroup size the driver may vary: no broadcasts.
        assert_eq!(
            EngineConfig::automatic(&adapter(Cpu, (8, 8)), none),
            EngineConfig::RowsDirect
        );
        assert_eq!(
            EngineConfig::automatic(&adapter(Cpu, (4, 8)), sub),
            EngineConfig::RowsDirect
        );
        for t in [DiscreteGpu, IntegratedGpu, VirtualGpu, Other] {
            assert_eq!(
                EngineConfig::automatic(&adapter(t, (32, 32)), sub),
                EngineConfig::Tile
            );
        }
        assert_eq!(
            EngineConfig::broadcast_lanes(&adapter(Cpu, (8, 8)), sub),
            Some(8)
        );
    }

    #[test]
    fn names_round_trip() {
        for c in EngineConfig::ALL {
            assert_eq!(c.name().parse::<EngineConfig>().unwrap(), c);
        }
        assert!("fast".parse::<EngineConfig>().is_err());
    }
}
