//! `--feature-gates` as etcd 3.6 and 3.7 read it (pkg/featuregate): a
//! comma-separated list of `Name=bool`, `AllAlpha`/`AllBeta` turning on
//! every alpha/beta gate not named, unknown names refused with etcd's
//! error. Every gate etcd 3.7.1 knows is accepted; what each does here is
//! in [`GATES`], and each one given is named at start with it.
//!
//! Invariant: [`FeatureGates::enabled`] answers for every known gate (its
//! default when not given), so the `etcd_server_feature_enabled` metric
//! lists the same names and stages as etcd's.

use std::collections::BTreeMap;

/// A gate: name, etcd's stage label, default, and what it means here.
pub struct Gate {
    pub name: &'static str,
    /// `ALPHA`, `BETA` (etcd's pre-release labels).
    pub stage: &'static str,
    pub default: bool,
    pub here: &'static str,
}

/// etcd 3.7.1's gates (server/features/etcd_features.go), with the two
/// special ones.
pub const GATES: &[Gate] = &[
    Gate {
        name: "AllAlpha",
        stage: "ALPHA",
        default: false,
        here: "turns on every alpha gate not named",
    },
    Gate {
        name: "AllBeta",
        stage: "BETA",
        default: false,
        here: "turns on every beta gate not named",
    },
    Gate {
        name: "CompactHashCheck",
        stage: "ALPHA",
        default: false,
        here: "no effect: the leader's periodic check compares whole-state hashes (--corrupt-check-time)",
    },
    Gate {
        name: "FastLeaseKeepAlive",
        stage: "BETA",
        default: true,
        here: "no effect: the leader renews a lease without waiting for its applied index either way",
    },
    Gate {
        name: "InitialCorruptCheck",
        stage: "ALPHA",
        default: false,
        here: "a restarting member compares its hash with its peers' before serving (as --experimental-initial-corrupt-check)",
    },
    Gate {
        name: "LeaseCheckpoint",
        stage: "ALPHA",
        default: false,
        here: "no effect: the leader always checkpoints remaining TTLs (--experimental-lease-checkpoint-interval)",
    },
    Gate {
        name: "LeaseCheckpointPersist",
        stage: "ALPHA",
        default: false,
        here: "no effect: checkpointed TTLs are always persisted",
    },
    Gate {
        name: "PriorityRequest",
        stage: "ALPHA",
        default: false,
        here: "no effect: requests are applied in log order",
    },
    Gate {
        name: "SetMemberLocalAddr",
        stage: "ALPHA",
        default: false,
        here: "no effect: peers are dialed from the address the system picks",
    },
    Gate {
        name: "StopGRPCServiceOnDefrag",
        stage: "ALPHA",
        default: false,
        here: "no effect: defragmentation does not stop serving here (readers never wait for it)",
    },
    Gate {
        name: "TxnModeWriteWithSharedBuffer",
        stage: "BETA",
        default: true,
        here: "no effect: a bbolt buffer setting with no counterpart here",
    },
];

/// The gates as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureGates {
    given: BTreeMap<&'static str, bool>,
}

/// Go's strconv.ParseBool.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl FeatureGates {
    /// Parses `--feature-gates`, with etcd's errors.
    pub fn parse(value: &str) -> Result<FeatureGates, String> {
        let mut given = BTreeMap::new();
        for item in value.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => return Err(format!("missing bool value for {}", item.trim())),
            };
            let b = parse_bool(v).ok_or_else(|| {
                format!("invalid value of {k}={v}, err: strconv.ParseBool: parsing {v:?}: invalid syntax")
            })?;
            let gate = GATES
                .iter()
                .find(|g| g.name == k)
                .ok_or_else(|| format!("unrecognized feature gate: {k}"))?;
            given.insert(gate.name, b);
        }
        Ok(FeatureGates { given })
    }

    /// Whether gate `name` is on: as given, else as AllAlpha/AllBeta say
    /// for its stage, else its default. Unknown names are off.
    pub fn enabled(&self, name: &str) -> bool {
        let Some(gate) = GATES.iter().find(|g| g.name == name) else {
            return false;
        };
        if let Some(v) = self.given.get(gate.name) {
            return *v;
        }
        // Every gate here is alpha or beta (AllAlpha and AllBeta among them:
        // not given, they fall back to themselves, then to their default).
        let all = if gate.stage == "ALPHA" {
            "AllAlpha"
        } else {
            "AllBeta"
        };
        self.given.get(all).copied().unwrap_or(gate.default)
    }

    /// Every known gate: name, stage and whether it is on (the metric).
    pub fn all(&self) -> Vec<(&'static str, &'static str, bool)> {
        GATES
            .iter()
            .map(|g| (g.name, g.stage, self.enabled(g.name)))
            .collect()
    }

    /// One line per gate given: its value and what it does here.
    pub fn notes(&self) -> Vec<String> {
        self.given
            .iter()
            .filter_map(|(name, v)| {
                let gate = GATES.iter().find(|g| g.name == *name)?;
                Some(format!("--feature-gates {name}={v}: {}", gate.here))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_as_etcd_parses_them() {
        let g = FeatureGates::parse("InitialCorruptCheck=true,TxnModeWriteWithSharedBuffer=false")
            .unwrap();
        assert!(g.enabled("InitialCorruptCheck"));
        assert!(!g.enabled("TxnModeWriteWithSharedBuffer"));
        assert!(g.enabled("FastLeaseKeepAlive"), "a beta gate on by default");
        assert!(!g.enabled("CompactHashCheck"));
        assert_eq!(
            FeatureGates::parse("Bogus=true").unwrap_err(),
            "unrecognized feature gate: Bogus"
        );
        assert_eq!(
            FeatureGates::parse("InitialCorruptCheck").unwrap_err(),
            "missing bool value for InitialCorruptCheck"
        );
        assert!(FeatureGates::parse("InitialCorruptCheck=yes")
            .unwrap_err()
            .starts_with("invalid value of InitialCorruptCheck=yes"));
        assert_eq!(FeatureGates::parse("").unwrap(), FeatureGates::default());
    }

    #[test]
    fn all_alpha_turns_on_alpha_gates_not_named() {
        let g = FeatureGates::parse("AllAlpha=true,CompactHashCheck=false").unwrap();
        assert!(g.enabled("InitialCorruptCheck"));
        assert!(g.enabled("AllAlpha"));
        assert!(!g.enabled("CompactHashCheck"));
        let all = g.all();
        assert_eq!(all.len(), GATES.len());
        assert!(all.contains(&("PriorityRequest", "ALPHA", true)));
        assert!(all.contains(&("TxnModeWriteWithSharedBuffer", "BETA", true)));
        assert_eq!(g.notes().len(), 2);
    }
}
