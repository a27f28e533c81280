//! Whether the nets of a depth sweep are prefixes of one net or drawn apart.

use crate::{Result, SpecError};

/// How the net of each depth in a sweep is drawn, per (arch, seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DepthNets {
    /// A depth-L net is the first L blocks of the deepest net (weights are
    /// drawn per tensor name): one net serves every depth, so the depths'
    /// results share their shallow layers and are positively correlated.
    #[default]
    Nested,
    /// Every depth has its own net, drawn from a seed of its own: the
    /// depths' results are independent samples, as when each depth's net is
    /// initialised on its own (one forward pass per depth instead of one).
    Independent,
}

impl DepthNets {
    /// Both choices.
    pub const ALL: [DepthNets; 2] = [DepthNets::Nested, DepthNets::Independent];

    /// The name as the CLI and the outputs spell it.
    pub fn name(self) -> &'static str {
        match self {
            DepthNets::Nested => "nested",
            DepthNets::Independent => "independent",
        }
    }
}

impl std::fmt::Display for DepthNets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DepthNets {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        DepthNets::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| SpecError::parse("depth nets", s, "known: nested, independent"))
    }
}

crate::parse::serde_via_str!(DepthNets);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct File {
            depth_nets: DepthNets,
        }
        for d in DepthNets::ALL {
            assert_eq!(d.name().parse::<DepthNets>().unwrap(), d);
            let text = toml::to_string(&File { depth_nets: d }).unwrap();
            assert_eq!(text.trim(), format!("depth_nets = \"{d}\""));
            assert_eq!(toml::from_str::<File>(&text).unwrap().depth_nets, d);
        }
        let e = "prefix".parse::<DepthNets>().unwrap_err().to_string();
        assert!(e.contains("known: nested, independent"), "{e}");
    }
}
