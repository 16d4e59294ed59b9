//! IPv4 subnets in CIDR notation (`10.89.0.0/16`): parsing, membership,
//! overlap, and the numbering of host addresses inside them.
//!
//! No kernel mechanism here: plain arithmetic on the 32-bit address, so the
//! allocator ([`super::ipam`]) and the route checks can be tested anywhere.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A network address and a prefix length, with the host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The subnet of `addr/prefix`; host bits of `addr` must be zero.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, String> {
        if prefix > 32 {
            return Err(format!("invalid prefix length /{prefix}: at most 32"));
        }
        let subnet = Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if subnet.network != addr {
            return Err(format!(
                "{addr}/{prefix} has host bits set: did you mean {subnet}?"
            ));
        }
        Ok(subnet)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the subnet spans (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(shorter) == u32::from(other.network) & mask(shorter)
    }

    /// The `n`-th address of the subnet (0 is the network address itself),
    /// None past its end.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + n as u32))
    }

    /// The position of `addr` inside the subnet (the inverse of [`Subnet::nth`]).
    pub fn index_of(&self, addr: Ipv4Addr) -> Option<u64> {
        self.contains(addr)
            .then(|| u64::from(u32::from(addr) - u32::from(self.network)))
    }

    /// The broadcast address (the last one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// The gateway docker gives a bridge network: the first host address.
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        (self.size() >= 4).then(|| self.nth(1)).flatten()
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(text: &str) -> Result<Subnet, String> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| {
            format!("invalid subnet {text:?}: use CIDR notation like 10.89.0.0/16")
        })?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("invalid subnet {text:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("invalid subnet {text:?}: {prefix:?} is not a prefix length"))?;
        Subnet::new(addr, prefix).map_err(|e| format!("invalid subnet {text:?}: {e}"))
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_text_round_trips_and_bad_text_is_explained() {
        let s: Subnet = "10.89.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.89.0.0/16");
        assert_eq!(s.size(), 65536);
        let err = "10.89.0.1/16".parse::<Subnet>().unwrap_err();
        assert!(err.contains("did you mean 10.89.0.0/16"), "{err}");
        assert!("10.89.0.0".parse::<Subnet>().is_err());
        assert!("10.89.0.0/33".parse::<Subnet>().is_err());
        assert!("fd00::/64".parse::<Subnet>().is_err());
    }

    #[test]
    fn membership_overlap_and_numbering() {
        let s: Subnet = "172.30.4.0/24".parse().unwrap();
        assert!(s.contains("172.30.4.200".parse().unwrap()));
        assert!(!s.contains("172.30.5.1".parse().unwrap()));
        assert_eq!(s.first_host(), Some("172.30.4.1".parse().unwrap()));
        assert_eq!(s.broadcast(), "172.30.4.255".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.nth(256), None);
        assert_eq!(s.index_of("172.30.4.7".parse().unwrap()), Some(7));
        let wide: Subnet = "172.30.0.0/16".parse().unwrap();
        let other: Subnet = "172.31.0.0/16".parse().unwrap();
        assert!(wide.overlaps(&s) && s.overlaps(&wide));
        assert!(!wide.overlaps(&other));
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.overlaps(&s));
    }
}
