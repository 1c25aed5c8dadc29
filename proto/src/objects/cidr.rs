//! IPv4 ranges as the cluster's flags and objects write them (`10.244.0.0/16`): the pod
//! network (node IPAM), the service range and the load-balancer pool (the API server's
//! allocators), the node's routes.

use std::net::Ipv4Addr;

/// Why a text is not an IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an IPv4 CIDR like 10.244.0.0/16: {reason}")]
pub struct CidrError {
    pub text: String,
    pub reason: &'static str,
}

/// An IPv4 network: its first address and prefix length (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// `a.b.c.d/n`; host bits are cleared (`10.244.1.7/24` is `10.244.1.0/24`).
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let invalid = |reason| CidrError {
            text: text.to_string(),
            reason,
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(|| invalid("no /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("the prefix is not a number"))?;
        if prefix > 32 {
            return Err(invalid("the prefix is over 32"));
        }
        Ok(Self {
            base: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The highest address (the broadcast address of a subnet).
    pub fn last(self) -> u32 {
        self.base | !mask(self.prefix)
    }

    /// How many addresses the range spans.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.base
    }

    /// The address `offset` places after the network address, if the range has it.
    pub fn nth(self, offset: u64) -> Option<Ipv4Addr> {
        (offset < self.size()).then(|| Ipv4Addr::from(self.base + offset as u32))
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(self, other: Self) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        Self::parse(text)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cidr_parses_to_its_network_and_knows_its_addresses() {
        let cidr = Ipv4Cidr::parse("10.96.3.7/12").unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert_eq!(
            Ipv4Addr::from(cidr.last()),
            Ipv4Addr::new(10, 111, 255, 255)
        );
        assert_eq!(cidr.size(), 1 << 20);
        assert_eq!(cidr.nth(10), Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(cidr.nth(1 << 20), None);
        assert!(cidr.contains(Ipv4Addr::new(10, 100, 1, 1)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert_eq!(Ipv4Cidr::parse("0.0.0.0/0").unwrap().size(), 1 << 32);
    }

    #[test]
    fn a_bad_cidr_says_what_is_wrong() {
        for (text, reason) in [
            ("10.0.0.0", "no /prefix"),
            ("10.0.0/8", "not an IPv4 address"),
            ("10.0.0.0/x", "the prefix is not a number"),
            ("10.0.0.0/33", "the prefix is over 32"),
        ] {
            assert_eq!(Ipv4Cidr::parse(text).unwrap_err().reason, reason, "{text}");
        }
    }

    #[test]
    fn ranges_overlap_when_they_share_an_address() {
        let a = Ipv4Cidr::parse("10.96.0.0/12").unwrap();
        assert!(a.overlaps(Ipv4Cidr::parse("10.100.0.0/16").unwrap()));
        assert!(Ipv4Cidr::parse("10.0.0.0/8").unwrap().overlaps(a));
        assert!(!a.overlaps(Ipv4Cidr::parse("10.112.0.0/24").unwrap()));
    }
}
