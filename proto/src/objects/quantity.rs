//! Resource quantities (`500m`, `2`, `128Mi`, `1G`, `1e3`): parsing and exact comparison.
//!
//! A quantity is a decimal number with an optional suffix: binary (`Ki` .. `Ei`, powers of
//! 1024), decimal SI (`n`, `u`, `m`, `k`, `M` .. `E`) or a decimal exponent (`e3`, `E-2`).
//! Kubernetes keeps quantities to nano-unit precision and rounds finer values up, so a
//! [`Quantity`] is an exact count of nano-units: `100m`, `0.1` and `1e-1` compare equal, and
//! `1Gi` is larger than `1G` without any floating point.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Nano-units per unit.
const NANOS: i128 = 1_000_000_000;

/// A parsed quantity, as a signed count of nano-units. Values beyond `i128` (some 10^29
/// units) saturate, which keeps them ordered above every quantity a cluster can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

/// A string that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression \
     '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError {
    /// The text that failed to parse.
    pub text: String,
}

/// What the suffix multiplies the number by.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// `10^n`.
    Decimal(i32),
    /// `1024^n`.
    Binary(u32),
}

impl Quantity {
    /// The zero quantity.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// Parses Kubernetes' quantity syntax.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let error = || QuantityError {
            text: text.to_string(),
        };
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(error());
        }
        let scale = parse_suffix(suffix).ok_or_else(error)?;

        // Trailing zeros of the fraction say nothing; dropping them keeps the mantissa small.
        let fraction = fraction.trim_end_matches('0');
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .saturating_mul(10)
                .saturating_add(i128::from(digit - b'0'));
        }
        let fraction_digits = i32::try_from(fraction.len()).map_err(|_| error())?;
        let magnitude = match scale {
            Scale::Decimal(exp) => scale_decimal(mantissa, exp.saturating_add(9 - fraction_digits)),
            Scale::Binary(power) => {
                let factor = 1i128.checked_shl(10 * power).unwrap_or(i128::MAX);
                scale_decimal(mantissa.saturating_mul(factor), 9 - fraction_digits)
            }
        };
        Ok(Quantity {
            nanos: if negative { -magnitude } else { magnitude },
        })
    }

    /// A quantity of `nanos` nano-units.
    pub fn from_nanos(nanos: i128) -> Self {
        Quantity { nanos }
    }

    /// The quantity in nano-units.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// The quantity in milli-units, rounded up (`0.5m` of CPU is `1m`).
    pub fn millis(self) -> i128 {
        div_ceil(self.nanos, NANOS / 1000)
    }

    /// The quantity in whole units, rounded up (`1500m` is `2`).
    pub fn units(self) -> i128 {
        div_ceil(self.nanos, NANOS)
    }

    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }

    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Quantity::parse(text)
    }
}

/// Shows the quantity in nano-units with the largest decimal suffix that keeps it exact
/// (`500m`, `2`, `1500k`); the original spelling is not kept.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SUFFIXES: [(&str, i128); 10] = [
            ("E", NANOS * 1_000_000_000_000_000_000),
            ("P", NANOS * 1_000_000_000_000_000),
            ("T", NANOS * 1_000_000_000_000),
            ("G", NANOS * 1_000_000_000),
            ("M", NANOS * 1_000_000),
            ("k", NANOS * 1_000),
            ("", NANOS),
            ("m", 1_000_000),
            ("u", 1_000),
            ("n", 1),
        ];
        if self.nanos == 0 {
            return f.write_str("0");
        }
        for (suffix, size) in SUFFIXES {
            if self.nanos % size == 0 {
                return write!(f, "{}{suffix}", self.nanos / size);
            }
        }
        write!(f, "{}n", self.nanos)
    }
}

/// Orders by value, so `"1Gi" > "1G"` reads naturally at call sites.
impl PartialEq<i128> for Quantity {
    fn eq(&self, units: &i128) -> bool {
        self.partial_cmp(units) == Some(Ordering::Equal)
    }
}

impl PartialOrd<i128> for Quantity {
    fn partial_cmp(&self, units: &i128) -> Option<Ordering> {
        Some(self.nanos.cmp(&units.saturating_mul(NANOS)))
    }
}

fn parse_suffix(suffix: &str) -> Option<Scale> {
    let scale = match suffix {
        "" => Scale::Decimal(0),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(1),
        "Mi" => Scale::Binary(2),
        "Gi" => Scale::Binary(3),
        "Ti" => Scale::Binary(4),
        "Pi" => Scale::Binary(5),
        "Ei" => Scale::Binary(6),
        _ => {
            // `E` alone is exa; `E` or `e` followed by a signed integer is an exponent.
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Scale::Decimal(exponent.parse().unwrap_or(if exponent.starts_with('-') {
                i32::MIN / 2
            } else {
                i32::MAX / 2
            }))
        }
    };
    Some(scale)
}

/// `value * 10^exp`, rounded up when `exp` is negative, saturating when it overflows.
fn scale_decimal(value: i128, exp: i32) -> i128 {
    if value == 0 {
        return 0;
    }
    if exp >= 0 {
        return match 10i128.checked_pow(exp.unsigned_abs()) {
            Some(factor) => value.saturating_mul(factor),
            None => i128::MAX,
        };
    }
    match 10i128.checked_pow(exp.unsigned_abs()) {
        Some(divisor) => div_ceil(value, divisor),
        // Anything positive finer than a nano-unit still rounds up to one.
        None => 1,
    }
}

/// Division rounding away from zero, as Kubernetes rounds quantities up in magnitude.
fn div_ceil(value: i128, divisor: i128) -> i128 {
    let quotient = value / divisor;
    if value % divisor == 0 {
        quotient
    } else {
        quotient + value.signum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).expect("valid quantity")
    }

    #[test]
    fn plain_and_milli_cpu_values_parse_exactly() {
        assert_eq!(q("2").nanos(), 2 * NANOS);
        assert_eq!(q("500m").millis(), 500);
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1.5").millis(), 1500);
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("1."), q("1"));
        assert_eq!(q("+3"), q("3"));
    }

    #[test]
    fn memory_suffixes_are_binary_or_decimal() {
        assert_eq!(q("128Mi").units(), 128 * 1024 * 1024);
        assert_eq!(q("1Ki").units(), 1024);
        assert_eq!(q("1G").units(), 1_000_000_000);
        assert_eq!(q("1k").units(), 1000);
        assert_eq!(q("1Ei").units(), 1 << 60);
        assert_eq!(q("1E").units(), 1_000_000_000_000_000_000);
        assert!(q("1Gi") > q("1G"));
        assert!(q("1000Mi") < q("1Gi"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
    }

    #[test]
    fn exponents_scale_by_powers_of_ten() {
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1000"));
        assert_eq!(q("12e-3"), q("12m"));
        assert_eq!(q("1e+2"), q("100"));
    }

    #[test]
    fn values_finer_than_a_nano_unit_round_up() {
        assert_eq!(q("1n").nanos(), 1);
        assert_eq!(q("0.1n").nanos(), 1);
        assert_eq!(q("1e-30").nanos(), 1);
        assert_eq!(q("1u").nanos(), 1000);
        assert_eq!(q("0.5m").millis(), 1);
        assert_eq!(q("1500m").units(), 2);
    }

    #[test]
    fn negatives_and_zero_are_recognised() {
        assert!(q("-1").is_negative());
        assert!(q("-100Mi") < Quantity::ZERO);
        assert!(q("0").is_zero());
        assert!(q("0Gi").is_zero());
        assert!(q("-0").is_zero());
    }

    #[test]
    fn huge_values_saturate_instead_of_wrapping() {
        assert!(q("1e100") > q("1Ei"));
        assert!(q("99999999999999999999999999999999999999999999") > q("1e20"));
        assert!(q("-1e100").is_negative());
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in [
            "", "m", "1.2.3", "1 Gi", "1gi", "1Gb", "1e", "1e1.5", "abc", "--1", "1K", "0x10",
            "1.5.Gi", "1ee3",
        ] {
            let err = Quantity::parse(bad).expect_err(bad);
            assert_eq!(err.text, bad);
        }
    }

    #[test]
    fn the_error_reads_like_kubernetes() {
        let err = Quantity::parse("2 cores").expect_err("not a quantity");
        assert_eq!(
            err.to_string(),
            "quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn display_uses_the_largest_exact_decimal_suffix() {
        assert_eq!(q("500m").to_string(), "500m");
        assert_eq!(q("2").to_string(), "2");
        assert_eq!(q("1Ki").to_string(), "1024");
        assert_eq!(q("1e3").to_string(), "1k");
        assert_eq!(q("0").to_string(), "0");
        assert_eq!(q("-2500m").to_string(), "-2500m");
    }

    #[test]
    fn quantities_compare_with_whole_units() {
        assert!(q("1500m") > 1);
        assert!(q("1") == 1);
        assert!(q("999m") < 1);
    }

    #[test]
    fn from_str_is_parse() {
        assert_eq!("64Mi".parse::<Quantity>(), Quantity::parse("64Mi"));
    }
}
