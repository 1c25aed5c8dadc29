//! Pod addresses: the hosts of the node's pod CIDR, handed out lowest first. Used by both
//! runtimes (the real one and the hollow nodes' fake), so it belongs to neither.

use std::net::Ipv4Addr;

/// The host addresses of an IPv4 CIDR, minus the network address and the first host (the
/// node's bridge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPool {
    network: u32,
    size: u32,
}

impl AddressPool {
    pub fn parse(cidr: &str) -> Option<Self> {
        let (address, bits) = cidr.split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| (8..=30).contains(b))?;
        let mask = u32::MAX << (32 - bits);
        Some(Self {
            network: u32::from(address) & mask,
            size: 1 << (32 - bits),
        })
    }

    /// The lowest address not in `used`.
    pub fn first_free(&self, used: &[String]) -> Option<Ipv4Addr> {
        (2..self.size.saturating_sub(1))
            .map(|offset| Ipv4Addr::from(self.network + offset))
            .find(|ip| !used.iter().any(|u| *u == ip.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_address_and_the_bridge_are_never_handed_out() {
        let pool = AddressPool::parse("10.244.1.0/24").unwrap();
        assert_eq!(pool.first_free(&[]), Some(Ipv4Addr::new(10, 244, 1, 2)));
        let used = ["10.244.1.2".to_string(), "10.244.1.4".to_string()];
        assert_eq!(pool.first_free(&used), Some(Ipv4Addr::new(10, 244, 1, 3)));
    }

    #[test]
    fn the_broadcast_address_is_never_handed_out() {
        let pool = AddressPool::parse("10.0.0.0/30").unwrap();
        assert_eq!(pool.first_free(&[]), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(pool.first_free(&["10.0.0.2".to_string()]), None);
    }

    #[test]
    fn ranges_outside_8_to_30_bits_and_bad_text_are_refused() {
        assert_eq!(AddressPool::parse("10.0.0.0/31"), None);
        assert_eq!(AddressPool::parse("10.0.0.0/7"), None);
        assert_eq!(AddressPool::parse("10.0.0.0"), None);
        assert_eq!(AddressPool::parse("nope/24"), None);
    }
}
