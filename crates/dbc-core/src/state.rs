//! [`ConnState`]: the connection states (docs/USER-GUIDE.md, the node status; docs/FAILOVER.md), one closed set.
//!
//! The router decides the state; the metrics keep a log of its changes; the connector,
//! the binding and `_debug` report it. It sits in a module of its own (a leaf) so that
//! the router and the metrics can both name it without importing each other.

use serde::Serialize;

/// Where a connector's operations can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// operations run on the primary
    Connected,
    /// the primary is down; operations run on the fallback
    Failover,
    /// the primary is down and there is no usable fallback; operations fail fast
    Reconnecting,
    /// closed; operations fail with `DBC_CONNECTION`
    Disconnected,
}

impl ConnState {
    /// The state's name (as serialized): `connected`, `failover`, `reconnecting`,
    /// `disconnected`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnState::Connected => "connected",
            ConnState::Failover => "failover",
            ConnState::Reconnecting => "reconnecting",
            ConnState::Disconnected => "disconnected",
        }
    }
}

impl std::fmt::Display for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets callers compare with a state's name (`state == "connected"`).
impl PartialEq<&str> for ConnState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ConnState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_its_name() {
        for s in [
            ConnState::Connected,
            ConnState::Failover,
            ConnState::Reconnecting,
            ConnState::Disconnected,
        ] {
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::String(s.as_str().into()))
            );
            assert_eq!(s, s.as_str());
        }
    }
}
