//! The little of the Solidity ABI the chain client speaks: `balanceOf`,
//! Multicall3's `aggregate3` and the ERC-20 `Transfer` log.
//!
//! Encoding follows the ABI spec: 32-byte words, dynamic values by offset
//! from the start of their enclosing tuple, lengths before contents, bytes
//! right-padded to a word.

use super::{Address, ChainError};

/// `balanceOf(address)`.
pub const BALANCE_OF: [u8; 4] = [0x70, 0xa0, 0x82, 0x31];
/// `aggregate3((address,bool,bytes)[])`.
pub const AGGREGATE3: [u8; 4] = [0x82, 0xad, 0x56, 0xcb];
/// `keccak256("Transfer(address,address,uint256)")`.
pub const TRANSFER_TOPIC: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952b3a7f163c4f5f2ed15c6ac4e9cce3";

fn word_u(n: usize) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&(n as u64).to_be_bytes());
    w
}

fn word_address(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(&a.0);
    w
}

/// Call data of `balanceOf(holder)`.
#[must_use]
pub fn balance_of(holder: &Address) -> Vec<u8> {
    let mut out = BALANCE_OF.to_vec();
    out.extend_from_slice(&word_address(holder));
    out
}

/// Call data of `aggregate3` over `(target, call data)` with
/// `allowFailure = true` for each.
#[must_use]
pub fn aggregate3(calls: &[(Address, Vec<u8>)]) -> Vec<u8> {
    let mut out = AGGREGATE3.to_vec();
    out.extend_from_slice(&word_u(0x20));
    out.extend_from_slice(&word_u(calls.len()));
    // Each tuple: target, allowFailure, offset (0x60), length, padded data.
    let sizes: Vec<usize> = calls
        .iter()
        .map(|(_, d)| 0x80 + d.len().div_ceil(32) * 32)
        .collect();
    let mut offset = calls.len() * 32;
    for size in &sizes {
        out.extend_from_slice(&word_u(offset));
        offset += size;
    }
    for (target, data) in calls {
        out.extend_from_slice(&word_address(target));
        out.extend_from_slice(&word_u(1));
        out.extend_from_slice(&word_u(0x60));
        out.extend_from_slice(&word_u(data.len()));
        out.extend_from_slice(data);
        out.resize(out.len() + (32 - data.len() % 32) % 32, 0);
    }
    out
}

fn word(data: &[u8], at: usize) -> Result<&[u8], ChainError> {
    data.get(at..at + 32)
        .ok_or_else(|| ChainError::Decode(format!("ABI data ends before byte {}", at + 32)))
}

fn usize_at(data: &[u8], at: usize) -> Result<usize, ChainError> {
    let w = word(data, at)?;
    if w[..24].iter().any(|b| *b != 0) {
        return Err(ChainError::Decode(
            "ABI offset or length out of range".to_owned(),
        ));
    }
    let n = u64::from_be_bytes(w[24..].try_into().unwrap_or_default());
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= data.len())
        .ok_or_else(|| ChainError::Decode("ABI offset or length out of range".to_owned()))
}

/// A `uint256` word as `u128` (token balances fit; larger is an error).
///
/// # Errors
///
/// [`ChainError::Decode`] for short data or a value above `u128::MAX`.
pub fn uint(data: &[u8]) -> Result<u128, ChainError> {
    let w = word(data, 0)?;
    if w[..16].iter().any(|b| *b != 0) {
        return Err(ChainError::Decode("uint256 above u128".to_owned()));
    }
    Ok(u128::from_be_bytes(w[16..].try_into().unwrap_or_default()))
}

/// The `(bool success, bytes returnData)[]` an `aggregate3` returns.
///
/// # Errors
///
/// [`ChainError::Decode`] for malformed data.
pub fn aggregate3_results(data: &[u8]) -> Result<Vec<(bool, Vec<u8>)>, ChainError> {
    let array = usize_at(data, 0)?;
    let n = usize_at(data, array)?;
    let base = array + 32;
    let mut out = Vec::with_capacity(n.min(4096));
    for i in 0..n {
        let tuple = base + usize_at(data, base + 32 * i)?;
        let success = word(data, tuple)?[31] == 1;
        let bytes_at = tuple + usize_at(data, tuple + 32)?;
        let len = usize_at(data, bytes_at)?;
        let bytes = data
            .get(bytes_at + 32..bytes_at + 32 + len)
            .ok_or_else(|| ChainError::Decode("aggregate3 return data cut short".to_owned()))?;
        out.push((success, bytes.to_vec()));
    }
    Ok(out)
}

/// Hex (with or without `0x`) to bytes.
///
/// # Errors
///
/// [`ChainError::Decode`] for odd length or a non-hex digit.
pub fn from_hex(s: &str) -> Result<Vec<u8>, ChainError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return Err(ChainError::Decode("odd-length hex".to_owned()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| ChainError::Decode(format!("`{}` is not hex", &s[i..i + 2])))
        })
        .collect()
}

/// Bytes to `0x`-prefixed lowercase hex.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A quantity (`0x1a`) as `u64`.
///
/// # Errors
///
/// [`ChainError::Decode`] when it is not one.
pub fn quantity(s: &str) -> Result<u64, ChainError> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16)
        .map_err(|_| ChainError::Decode(format!("`{s}` is not a quantity")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(b: u8) -> Address {
        Address([b; 20])
    }

    #[test]
    fn balance_of_call_data_is_selector_then_padded_address() {
        let data = balance_of(&addr(0xab));
        assert_eq!(data.len(), 36);
        assert_eq!(to_hex(&data[..4]), "0x70a08231");
        assert!(data[4..16].iter().all(|b| *b == 0));
        assert!(data[16..].iter().all(|b| *b == 0xab));
    }

    #[test]
    fn aggregate3_layout_matches_the_abi() {
        let calls = vec![
            (addr(1), balance_of(&addr(2))),
            (addr(1), balance_of(&addr(3))),
        ];
        let data = aggregate3(&calls);
        // selector, offset, length, 2 offsets, 2 tuples of 4 words + 2 words of data.
        assert_eq!(data.len(), 4 + 32 * 4 + 2 * (32 * 4 + 64));
        let body = &data[4..];
        assert_eq!(usize_at(body, 0).unwrap(), 0x20);
        assert_eq!(usize_at(body, 0x20).unwrap(), 2);
        assert_eq!(
            usize_at(body, 0x40).unwrap(),
            0x40,
            "first tuple after the two offsets"
        );
        assert_eq!(usize_at(body, 0x60).unwrap(), 0x40 + 0xc0);
        assert_eq!(word(body, 0x80).unwrap()[12..], [1u8; 20]);
    }

    #[test]
    fn aggregate3_results_decode() {
        // Two results: (true, uint 5), (false, empty).
        let mut d = Vec::new();
        d.extend_from_slice(&word_u(0x20));
        d.extend_from_slice(&word_u(2));
        d.extend_from_slice(&word_u(0x40));
        d.extend_from_slice(&word_u(0x40 + 0x80));
        d.extend_from_slice(&word_u(1));
        d.extend_from_slice(&word_u(0x40));
        d.extend_from_slice(&word_u(32));
        d.extend_from_slice(&word_u(5));
        d.extend_from_slice(&word_u(0));
        d.extend_from_slice(&word_u(0x40));
        d.extend_from_slice(&word_u(0));
        let r = aggregate3_results(&d).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].0 && uint(&r[0].1).unwrap() == 5);
        assert!(!r[1].0 && r[1].1.is_empty());
        assert!(aggregate3_results(&d[..100]).is_err());
        let mut huge = d.clone();
        huge[63] = 0xff;
        huge[62] = 0xff;
        assert!(
            aggregate3_results(&huge).is_err(),
            "a length past the data is refused"
        );
    }

    #[test]
    fn hex_and_quantities() {
        assert_eq!(from_hex("0x0aff").unwrap(), vec![0x0a, 0xff]);
        assert!(from_hex("0xabc").is_err() && from_hex("zz").is_err());
        assert_eq!(quantity("0x2710").unwrap(), 10_000);
        assert!(uint(&[0xff; 32]).is_err());
    }
}
