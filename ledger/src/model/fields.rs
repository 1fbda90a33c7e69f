//! Field types and syntax checks shared by the event catalogue: money, dates, codes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimal places kept for money, quantities and weights.
pub const DECIMAL_SCALE: u32 = 6;
const SCALE_FACTOR: u128 = 1_000_000;
/// Most integer digits in a decimal string (keeps every value far inside `u128`).
pub const MAX_INTEGER_DIGITS: usize = 24;

/// Why a field's text is not of its type; each message names the field's value and the form
/// it must take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Not digits with an optional fraction.
    #[error("\"{0}\" is not a decimal: write digits with an optional fraction, e.g. \"12500.00\"")]
    NotDecimal(String),
    /// A fraction of no digit, or of more than [`DECIMAL_SCALE`].
    #[error("\"{0}\" has a bad fraction: use 1 to {DECIMAL_SCALE} digits after the point")]
    BadFraction(String),
    /// Not an ISO 4217 code.
    #[error("currency \"{0}\" is not an ISO 4217 code such as \"USD\"")]
    Currency(String),
    /// Not an ISO 3166-1 alpha-2 code.
    #[error("country \"{0}\" is not an ISO 3166-1 alpha-2 code such as \"DE\"")]
    Country(String),
    /// Not a UN/LOCODE.
    #[error("{field} \"{value}\" is not a UN/LOCODE such as \"CNSHA\" or \"DEHAM\"")]
    Locode {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// Not seven digits.
    #[error("vessel_imo \"{0}\" is not an IMO number: seven digits such as \"9074729\"")]
    Imo(String),
    /// Seven digits whose check digit is wrong.
    #[error("vessel_imo \"{value}\" has a wrong check digit (expected {expected}); check the number with the vessel's registry entry")]
    ImoCheckDigit {
        /// The number.
        value: String,
        /// The check digit its first six digits give.
        expected: u32,
    },
    /// Not an IATA flight designator.
    #[error("flight \"{0}\" is not an IATA flight designator: airline code and flight number, such as \"LH400\"")]
    Flight(String),
    /// Not 6 to 10 digits.
    #[error("HS code \"{0}\" must be 6 to 10 digits, e.g. \"851713\"")]
    HsCode(String),
    /// Not of the ISO 6346 shape.
    #[error("container \"{0}\" is not an ISO 6346 number (owner code, category U/J/Z, 6 digits, check digit)")]
    Container(String),
    /// Of the ISO 6346 shape, with a wrong check digit.
    #[error("container \"{0}\" has a wrong ISO 6346 check digit")]
    ContainerCheckDigit(String),
    /// Not a calendar date `YYYY-MM-DD`.
    #[error("date \"{0}\" is not YYYY-MM-DD")]
    Date(String),
    /// A reference without a `kind:` prefix.
    #[error(
        "ref \"{0}\" must look like \"shipment:ID\" (order, invoice, shipment, declaration, lc)"
    )]
    Ref(String),
    /// A reference to a kind of entity there is none of.
    #[error("ref kind \"{0}\" is not one of order, invoice, shipment, declaration, lc")]
    RefKind(String),
    /// A reference with an empty or too long id.
    #[error("ref \"{0}\" has an empty or too long id")]
    RefId(String),
    /// A participant id of other characters or length.
    #[error("participant id \"{0}\" must be 1 to {max} characters of a-z, 0-9, '-', '.', '_'", max = crate::model::genesis::MAX_ID_BYTES)]
    ParticipantId(String),
}

/// A non-negative decimal with up to six places, written in JSON as a string such as
/// `"12500.00"` and held as an integer count of millionths, so arithmetic is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Decimal(pub u128);

impl Decimal {
    /// Parses `^(0|[1-9][0-9]{0,23})(\.[0-9]{1,6})?$`.
    pub fn parse(text: &str) -> Result<Decimal, FieldError> {
        let (int_part, frac_part) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int_part)
            || int_part.len() > MAX_INTEGER_DIGITS
            || (int_part.len() > 1 && int_part.starts_with('0'))
        {
            return Err(FieldError::NotDecimal(text.into()));
        }
        let mut value: u128 =
            int_part.bytes().fold(0u128, |acc, b| acc * 10 + u128::from(b - b'0'));
        value *= SCALE_FACTOR;
        if let Some(frac) = frac_part {
            if !digits(frac) || frac.len() > DECIMAL_SCALE as usize {
                return Err(FieldError::BadFraction(text.into()));
            }
            let mut scale = SCALE_FACTOR;
            for b in frac.bytes() {
                scale /= 10;
                value += u128::from(b - b'0') * scale;
            }
        }
        Ok(Decimal(value))
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// Sum, saturating (amounts are bounded far below `u128::MAX`).
    pub fn plus(self, other: Decimal) -> Decimal {
        Decimal(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / SCALE_FACTOR;
        let frac = self.0 % SCALE_FACTOR;
        if frac == 0 {
            return write!(f, "{int}.00");
        }
        let text = format!("{frac:06}");
        let trimmed = text.trim_end_matches('0');
        let shown = if trimmed.len() < 2 { &text[..2] } else { trimmed };
        write!(f, "{int}.{shown}")
    }
}

/// A decimal that keeps its JSON string form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecimalString {
    /// The parsed value.
    pub value: Decimal,
    /// The text as signed.
    pub text: String,
}

impl<'de> Deserialize<'de> for DecimalString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = Decimal::parse(&text).map_err(serde::de::Error::custom)?;
        Ok(DecimalString { value, text })
    }
}

impl Serialize for DecimalString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

fn all_upper_alpha(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_uppercase())
}

/// ISO 4217 currency: three upper-case letters.
pub fn check_currency(s: &str) -> Result<(), FieldError> {
    if s.len() == 3 && all_upper_alpha(s) {
        Ok(())
    } else {
        Err(FieldError::Currency(s.into()))
    }
}

/// ISO 3166-1 alpha-2 country: two upper-case letters.
pub fn check_country(s: &str) -> Result<(), FieldError> {
    if s.len() == 2 && all_upper_alpha(s) {
        Ok(())
    } else {
        Err(FieldError::Country(s.into()))
    }
}

/// UN/LOCODE: country (2 letters) + location (3 letters or digits 2-9), e.g. `CNSHA`, `DEHAM`;
/// `field` names it in the message.
pub fn check_locode(field: &'static str, s: &str) -> Result<(), FieldError> {
    let b = s.as_bytes();
    let ok = b.len() == 5
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..].iter().all(|c| c.is_ascii_uppercase() || (b'2'..=b'9').contains(c));
    if ok {
        Ok(())
    } else {
        Err(FieldError::Locode { field, value: s.into() })
    }
}

/// IMO ship identification number: seven digits, the last a check digit (the sum of the first
/// six weighted 7 down to 2, modulo 10), e.g. `9074729`.
pub fn check_imo(s: &str) -> Result<(), FieldError> {
    let b = s.as_bytes();
    if b.len() != 7 || !b.iter().all(u8::is_ascii_digit) {
        return Err(FieldError::Imo(s.into()));
    }
    let sum: u32 = b[..6].iter().zip((2..=7).rev()).map(|(d, w)| u32::from(d - b'0') * w).sum();
    if sum % 10 != u32::from(b[6] - b'0') {
        return Err(FieldError::ImoCheckDigit { value: s.into(), expected: sum % 10 });
    }
    Ok(())
}

/// IATA flight designator: the airline's two-character code (letters or digits, not two
/// digits) or three-letter ICAO code, a flight number of one to four digits, and an optional
/// operational suffix letter, e.g. `LH400`, `CA931`, `5X76A`.
pub fn check_flight(s: &str) -> Result<(), FieldError> {
    let b = s.as_bytes();
    let airline = |n: usize| {
        b.len() > n
            && if n == 2 {
                b[..2].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                    && !b[..2].iter().all(u8::is_ascii_digit)
            } else {
                b[..3].iter().all(u8::is_ascii_uppercase)
            }
    };
    let number = |rest: &[u8]| {
        let rest = match rest.last() {
            Some(c) if c.is_ascii_uppercase() => &rest[..rest.len() - 1],
            _ => rest,
        };
        (1..=4).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit)
    };
    if (airline(3) && number(&b[3..])) || (airline(2) && number(&b[2..])) {
        Ok(())
    } else {
        Err(FieldError::Flight(s.into()))
    }
}

/// Harmonized System code: 6 to 10 digits.
pub fn check_hs_code(s: &str) -> Result<(), FieldError> {
    if (6..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FieldError::HsCode(s.into()))
    }
}

/// ISO 6346 container number with its check digit, e.g. `MSCU1234566`.
pub fn check_container(s: &str) -> Result<(), FieldError> {
    let b = s.as_bytes();
    let shape = b.len() == 11
        && b[..3].iter().all(u8::is_ascii_uppercase)
        && matches!(b[3], b'U' | b'J' | b'Z')
        && b[4..].iter().all(u8::is_ascii_digit);
    if !shape {
        return Err(FieldError::Container(s.into()));
    }
    if iso6346_check_digit(&b[..10]) != u32::from(b[10] - b'0') {
        return Err(FieldError::ContainerCheckDigit(s.into()));
    }
    Ok(())
}

/// The ISO 6346 check digit of the first ten characters.
pub fn iso6346_check_digit(first_ten: &[u8]) -> u32 {
    // Letters map to 10..38 skipping multiples of 11.
    let value = |c: u8| -> u32 {
        if c.is_ascii_digit() {
            return u32::from(c - b'0');
        }
        let mut v = 10u32;
        let mut letter = b'A';
        while letter < c {
            v += 1;
            if v.is_multiple_of(11) {
                v += 1;
            }
            letter += 1;
        }
        v
    };
    let sum: u32 = first_ten.iter().enumerate().map(|(i, &c)| value(c) << i).sum();
    sum % 11 % 10
}

/// A calendar date `YYYY-MM-DD`, held as days since 1970-01-01.
pub fn parse_date(s: &str) -> Result<i64, FieldError> {
    let err = || FieldError::Date(s.into());
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, FieldError> {
        s[r].parse::<i64>().map_err(|_| err())
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month[usize::try_from(m - 1).unwrap_or(0)] {
        return Err(err());
    }
    Ok(days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day (since 1970-01-01, UTC) that a Unix time in milliseconds falls on.
pub fn day_of_ms(time_ms: u64) -> i64 {
    i64::try_from(time_ms / 86_400_000).unwrap_or(i64::MAX)
}

/// The proleptic Gregorian date `(year, month, day)` of a day since 1970-01-01 (H. Hinnant's
/// algorithm, the inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A Unix time in milliseconds as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-06-02T03:15:00.000Z`.
pub fn rfc3339_ms(time_ms: u64) -> String {
    let (y, m, d) = civil_from_days(day_of_ms(time_ms));
    let in_day = time_ms % 86_400_000;
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_round_trip_through_the_calendar() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_780_000_000_000), "2026-05-28T20:26:40.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        for days in [-1, 0, 59, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn decimals_parse_exactly_and_reject_junk() {
        assert_eq!(Decimal::parse("12500.00"), Ok(Decimal(12_500_000_000)));
        assert_eq!(Decimal::parse("0.000001"), Ok(Decimal(1)));
        assert_eq!(Decimal::parse("7"), Ok(Decimal(7_000_000)));
        for bad in ["", "-1", "01", "1.", ".5", "1.1234567", "1e3", "1,5", " 1"] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Decimal(12_500_500_000).to_string(), "12500.50");
        assert_eq!(Decimal(1).to_string(), "0.000001");
    }

    #[test]
    fn iso6346_check_digits() {
        assert!(check_container("CSQU3054383").is_ok());
        assert!(check_container("MSCU1234566").is_ok());
        assert!(check_container("CSQU3054384").is_err());
        assert!(check_container("CSQX3054383").is_err());
    }

    #[test]
    fn codes_and_dates() {
        assert!(check_imo("9074729").is_ok());
        assert!(check_imo("9811000").is_ok());
        assert_eq!(
            check_imo("9074728"),
            Err(FieldError::ImoCheckDigit { value: "9074728".into(), expected: 9 })
        );
        assert!(check_imo("9074728").unwrap_err().to_string().contains("check digit"));
        for bad in ["abc", "907472", "90747290", "IMO9074"] {
            assert!(check_imo(bad).is_err(), "{bad}");
        }
        for good in ["LH400", "CA931", "5X76", "5X76A", "KLM1234", "U21"] {
            assert!(check_flight(good).is_ok(), "{good}");
        }
        for bad in ["not a flight !!", "LH", "12345", "LH12345", "lh400", "L-400", "LH40-0"] {
            assert!(check_flight(bad).is_err(), "{bad}");
        }
        assert!(check_locode("location", "CNSHA").is_ok());
        assert!(check_locode("location", "DEHAM").is_ok());
        assert!(check_locode("location", "cnsha").is_err());
        assert!(check_locode("location", "CNSH1").is_err());
        assert!(check_hs_code("851713").is_ok());
        assert!(check_hs_code("85171").is_err());
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2026-11-28"), Ok(20_785));
        assert!(parse_date("2026-02-29").is_err());
        assert!(parse_date("2024-02-29").is_ok());
        assert_eq!(day_of_ms(86_400_000 * 3 + 5), 3);
    }
}
