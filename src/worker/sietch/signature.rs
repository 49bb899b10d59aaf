//! Wallet-ownership proofs: recovering the Ethereum address that produced a
//! `personal_sign` signature.
//!
//! The Discord bot links a wallet by asking the user to sign a challenge
//! message in their wallet with `personal_sign`; the worker then recovers the
//! signer's address from the signature and compares it with the address the
//! user claimed. Nothing secret is ever sent to us: the signature alone proves
//! control of the key.
//!
//! # What is signed
//!
//! `personal_sign` implements [EIP-191] version `0x45` ("E"). The wallet does
//! not sign the message itself but the Keccak-256 hash of
//!
//! ```text
//! "\x19Ethereum Signed Message:\n" || decimal byte length of message || message
//! ```
//!
//! The `0x19` prefix byte can never start a valid RLP-encoded transaction, so
//! a dapp cannot trick a wallet into signing a transaction disguised as a
//! message. The length is the number of *bytes* of the UTF-8 message written
//! in ASCII decimal (`"é"` is `2`), which is what every wallet computes.
//!
//! The hash is the original Keccak-256 that Ethereum uses everywhere, whose
//! padding differs from the standardised SHA3-256: the two give different
//! digests for the same input, and only Keccak-256 matches wallets.
//!
//! # Signature format
//!
//! A signature is 65 bytes, sent as `0x` followed by 130 hex digits:
//! `r` (32 bytes, big endian) `||` `s` (32 bytes) `||` `v` (1 byte). `v`
//! selects which of the two curve points with x-coordinate `r` was the
//! signer's nonce point, so that exactly one public key is recovered. Most
//! wallets write `v` as 27 or 28 (a convention inherited from Bitcoin); some
//! hardware wallets and libraries write the bare recovery id 0 or 1. Both are
//! accepted; anything else is refused as malformed.
//!
//! # Malleability ([EIP-2])
//!
//! For every valid signature `(r, s, v)` the triple `(r, n − s, v ^ 1)` is
//! also valid for the same message and key, where `n` is the order of
//! secp256k1. Ethereum has refused the upper half (`s > n/2`) since
//! Homestead, and every honest wallet produces low `s`. We refuse high `s`
//! too, so that one ownership proof has exactly one accepted encoding and a
//! replayed, re-encoded signature cannot pass a "have we seen this signature"
//! check.
//!
//! # Address
//!
//! The address is the last 20 bytes of the Keccak-256 hash of the 64-byte
//! uncompressed public key `x || y`, without the SEC1 `0x04` tag byte.
//!
//! Every function here returns an error instead of panicking, whatever the
//! input, because the signature and message arrive from the network.
//!
//! [EIP-191]: https://eips.ethereum.org/EIPS/eip-191
//! [EIP-2]: https://eips.ethereum.org/EIPS/eip-2

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

/// The EIP-191 version `0x45` prefix that `personal_sign` puts before the
/// decimal length and the message.
const PERSONAL_PREFIX: &[u8] = b"\x19Ethereum Signed Message:\n";

/// Length in bytes of an `r || s || v` signature.
const SIGNATURE_LEN: usize = 65;

/// Length in bytes of an Ethereum address.
const ADDRESS_LEN: usize = 20;

/// Offset of the Bitcoin-style `v` (27/28) from the bare recovery id (0/1).
const V_OFFSET: u8 = 27;

/// Why a signature was refused.
///
/// The variants separate "the client sent garbage" from "the signature is
/// well formed but proves nothing", so that the HTTP endpoint can answer with
/// a precise message and logs show which wallets misbehave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The text is not a signature at all: not `0x` followed by exactly 130
    /// hex digits, or its `v` byte is none of 27, 28, 0, 1. The string says
    /// which, without echoing the input (it may be arbitrarily long).
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signature is well formed but no public key can be derived from
    /// it: `r` or `s` is zero or not below the curve order `n`, `r` is not the
    /// x-coordinate of a curve point, or the recovered key does not verify.
    /// Also returned for a secret key that is zero or not below `n`.
    #[error("invalid signature: no public key can be recovered from it")]
    Invalid,
    /// `s` lies above `n/2`. Such a signature is the malleated twin of a
    /// low-`s` one; EIP-2 refuses it and so do we, so that each proof has
    /// exactly one accepted encoding.
    #[error(
        "signature has a high s value (above n/2); malleable signatures are refused as in EIP-2"
    )]
    HighS,
}

/// Keccak-256 of `data`, the hash Ethereum uses for addresses and signed
/// messages.
///
/// This is the original Keccak submission, not the standardised SHA3-256,
/// whose different padding gives different digests; wallets use Keccak-256.
#[must_use]
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The 32-byte digest a wallet actually signs when asked to `personal_sign`
/// `message`: Keccak-256 of `"\x19Ethereum Signed Message:\n"`, the message's
/// byte length in decimal ASCII, and the message (EIP-191 version `0x45`).
///
/// Takes bytes rather than text because the length in the prefix counts
/// bytes; for a `&str` pass `message.as_bytes()`.
#[must_use]
pub fn personal_message_hash(message: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(PERSONAL_PREFIX);
    hasher.update(message.len().to_string().as_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

/// Parses a `personal_sign` signature from its hex form into the 65 bytes
/// `r || s || v`.
///
/// Accepts an optional `0x` (or `0X`) prefix and hex digits in either case,
/// because wallets and libraries differ on both. `v` is returned exactly as
/// given (27, 28, 0 or 1); it is checked here so that anything this function
/// accepts is at least shaped like an Ethereum signature. Range checks on `r`
/// and `s` are left to [`recover_personal_sign`].
///
/// # Errors
///
/// [`SignatureError::Malformed`] if the text is not exactly 130 hex digits
/// after the optional prefix, or if `v` is not one of 27, 28, 0, 1.
pub fn parse_signature(hex: &str) -> Result<[u8; 65], SignatureError> {
    let digits = strip_hex_prefix(hex);
    if digits.len() != SIGNATURE_LEN * 2 {
        return Err(SignatureError::Malformed(format!(
            "expected {} hex digits after the optional 0x, got {} characters",
            SIGNATURE_LEN * 2,
            digits.len()
        )));
    }
    let bytes: [u8; SIGNATURE_LEN] = decode_hex(digits).ok_or_else(|| {
        SignatureError::Malformed("contains a character that is not a hex digit".to_owned())
    })?;
    recovery_id_of(bytes[SIGNATURE_LEN - 1])?;
    Ok(bytes)
}

/// Recovers the address of the wallet that `personal_sign`ed `message`,
/// producing `signature`.
///
/// The caller proves ownership by comparing the result with the claimed
/// address; this function cannot tell a wrong message from a wrong key,
/// because any well-formed signature over any message recovers *some*
/// address. The message must be byte-for-byte what the wallet displayed
/// (same line endings, no trimming), or a different address comes back.
///
/// # Errors
///
/// - [`SignatureError::Malformed`] if `signature` is not `0x` + 130 hex
///   digits or its `v` is not 27, 28, 0 or 1.
/// - [`SignatureError::Invalid`] if `r` or `s` is zero or not below the curve
///   order, or no public key can be recovered.
/// - [`SignatureError::HighS`] if `s` is above `n/2` (EIP-2).
pub fn recover_personal_sign(message: &str, signature: &str) -> Result<[u8; 20], SignatureError> {
    let bytes = parse_signature(signature)?;
    let (rs, v) = bytes.split_at(SIGNATURE_LEN - 1);
    let recovery_id = v
        .first()
        .copied()
        .ok_or(SignatureError::Invalid)
        .and_then(recovery_id_of)?;
    // `from_slice` rejects r or s equal to zero or not below n.
    let sig = Signature::from_slice(rs).map_err(|_| SignatureError::Invalid)?;
    // `normalize_s` yields a value only when s is in the upper half.
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let hash = personal_message_hash(message.as_bytes());
    let key = VerifyingKey::recover_from_prehash(&hash, &sig, recovery_id)
        .map_err(|_| SignatureError::Invalid)?;
    Ok(address_of_key(&key))
}

/// The Ethereum address controlled by the 32-byte big-endian secret key
/// `secret`.
///
/// Exists so that tests and the load simulator can play a wallet without one.
///
/// # Errors
///
/// [`SignatureError::Invalid`] if `secret` is zero or not below the curve
/// order, so that it is not a secp256k1 private key.
pub fn address_of_secret(secret: &[u8; 32]) -> Result<[u8; 20], SignatureError> {
    let key = signing_key(secret)?;
    Ok(address_of_key(key.verifying_key()))
}

/// Signs `message` as a wallet's `personal_sign` would, returning `0x` and
/// 130 lowercase hex digits with `v` = 27 or 28 and low `s`.
///
/// Exists so that tests and the load simulator can play a wallet; the worker
/// itself never holds user keys. Signing is deterministic (RFC 6979), as in
/// wallets, so the output for a given key and message matches theirs exactly.
///
/// # Errors
///
/// [`SignatureError::Invalid`] if `secret` is not a valid secp256k1 private
/// key, or in the (probability about 2⁻¹²⁸) case that the nonce point's
/// x-coordinate exceeded `n`, which `v` = 27/28 cannot express.
pub fn sign_personal(secret: &[u8; 32], message: &str) -> Result<String, SignatureError> {
    let key = signing_key(secret)?;
    let hash = personal_message_hash(message.as_bytes());
    let (sig, mut recovery_id) = key
        .sign_prehash_recoverable(&hash)
        .map_err(|_| SignatureError::Invalid)?;
    // k256 already produces low s; normalising again keeps the EIP-2
    // guarantee documented above independent of that implementation detail.
    let sig = match sig.normalize_s() {
        Some(low) => {
            recovery_id = RecoveryId::new(!recovery_id.is_y_odd(), recovery_id.is_x_reduced());
            low
        }
        None => sig,
    };
    if recovery_id.is_x_reduced() {
        return Err(SignatureError::Invalid);
    }
    let mut bytes = [0u8; SIGNATURE_LEN];
    let (rs, v) = bytes.split_at_mut(SIGNATURE_LEN - 1);
    rs.copy_from_slice(&sig.to_bytes());
    for b in v {
        *b = V_OFFSET + recovery_id.to_byte();
    }
    Ok(encode_hex(&bytes))
}

/// Formats an address as `0x` and 40 lowercase hex digits.
///
/// Lowercase rather than EIP-55 mixed case so that stored and compared
/// addresses have one spelling.
#[must_use]
pub fn to_hex_address(a: &[u8; 20]) -> String {
    encode_hex(a)
}

/// Parses an address written as 40 hex digits with an optional `0x` prefix.
///
/// Any letter case is accepted and an EIP-55 checksum is not verified: the
/// checksum only guards humans against typos, and a mistyped address simply
/// fails to match the address recovered from the signature. Returns `None`
/// for anything else.
#[must_use]
pub fn parse_address(s: &str) -> Option<[u8; 20]> {
    let digits = strip_hex_prefix(s);
    if digits.len() != ADDRESS_LEN * 2 {
        return None;
    }
    decode_hex(digits)
}

/// Maps the signature's `v` byte to the recovery id k256 expects.
fn recovery_id_of(v: u8) -> Result<RecoveryId, SignatureError> {
    let id = match v {
        0 | 1 => v,
        27 | 28 => v - V_OFFSET,
        _ => {
            return Err(SignatureError::Malformed(format!(
                "v must be 27, 28, 0 or 1, got {v}"
            )));
        }
    };
    RecoveryId::from_byte(id).ok_or(SignatureError::Invalid)
}

fn signing_key(secret: &[u8; 32]) -> Result<SigningKey, SignatureError> {
    SigningKey::from_slice(secret).map_err(|_| SignatureError::Invalid)
}

/// Last 20 bytes of Keccak-256 over the 64-byte `x || y` public key.
fn address_of_key(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    // Uncompressed SEC1 is 0x04 || x || y; the tag byte is not hashed.
    let xy = point.as_bytes().get(1..).unwrap_or_default();
    let hash = keccak256(xy);
    let mut address = [0u8; ADDRESS_LEN];
    address.copy_from_slice(&hash[hash.len() - ADDRESS_LEN..]);
    address
}

/// Works on bytes so that non-ASCII input can never split a UTF-8 character.
fn strip_hex_prefix(s: &str) -> &[u8] {
    let bytes = s.as_bytes();
    bytes
        .strip_prefix(b"0x")
        .or_else(|| bytes.strip_prefix(b"0X"))
        .unwrap_or(bytes)
}

/// Decodes exactly `2 * N` hex digits; `None` on any other length or a
/// non-hex byte.
fn decode_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (pair.first().copied()?, pair.get(1).copied()?);
        *byte = (hex_value(hi)? << 4) | hex_value(lo)?;
    }
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `0x` followed by lowercase hex.
fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// web3.js `eth.accounts` documentation vector.
    const WEB3_SECRET: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const WEB3_ADDRESS: &str = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
    const WEB3_MESSAGE: &str = "Some data";
    const WEB3_SIGNATURE: &str = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c";

    /// Order of the secp256k1 group.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];

    fn secret(hex: &str) -> [u8; 32] {
        decode_hex(strip_hex_prefix(hex)).expect("test secret is 64 hex digits")
    }

    fn address(hex: &str) -> [u8; 20] {
        parse_address(hex).expect("test address is 40 hex digits")
    }

    fn sig_bytes(hex: &str) -> [u8; 65] {
        parse_signature(hex).expect("test signature parses")
    }

    /// Big-endian `a - b` for `a >= b`.
    fn sub_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            out[i] = u8::try_from(d).expect("digit fits in a byte");
        }
        assert_eq!(borrow, 0, "sub_be needs a >= b");
        out
    }

    #[test]
    fn keccak256_of_empty_input_is_the_known_constant() {
        assert_eq!(
            encode_hex(&keccak256(b"")),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn keccak256_is_not_sha3_256() {
        // SHA3-256("") = a7ffc6f8bf1ed766...; Keccak-256 must differ.
        assert!(!encode_hex(&keccak256(b"")).starts_with("0xa7ffc6f8"));
    }

    #[test]
    fn personal_message_hash_matches_web3_documented_hash() {
        assert_eq!(
            encode_hex(&personal_message_hash(WEB3_MESSAGE.as_bytes())),
            "0x1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
        );
    }

    #[test]
    fn personal_message_hash_prefix_counts_bytes_not_characters() {
        let message = "é€"; // 2 characters, 5 bytes
        let mut framed = b"\x19Ethereum Signed Message:\n5".to_vec();
        framed.extend_from_slice(message.as_bytes());
        assert_eq!(
            personal_message_hash(message.as_bytes()),
            keccak256(&framed)
        );
    }

    #[test]
    fn web3_vector_secret_has_documented_address() {
        let got = address_of_secret(&secret(WEB3_SECRET)).expect("valid secret");
        assert_eq!(to_hex_address(&got), WEB3_ADDRESS);
    }

    #[test]
    fn web3_vector_sign_personal_produces_documented_signature() {
        let got = sign_personal(&secret(WEB3_SECRET), WEB3_MESSAGE).expect("signs");
        assert_eq!(got, WEB3_SIGNATURE);
    }

    #[test]
    fn web3_vector_signature_recovers_documented_address() {
        let got = recover_personal_sign(WEB3_MESSAGE, WEB3_SIGNATURE).expect("recovers");
        assert_eq!(got, address(WEB3_ADDRESS));
    }

    #[test]
    fn web3_vector_recovers_with_uppercase_hex_and_no_prefix() {
        let upper = WEB3_SIGNATURE.trim_start_matches("0x").to_uppercase();
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &upper),
            Ok(address(WEB3_ADDRESS))
        );
        let upper_prefix = format!("0X{upper}");
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &upper_prefix),
            Ok(address(WEB3_ADDRESS))
        );
    }

    #[test]
    fn secret_key_one_has_well_known_address() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let got = address_of_secret(&one).expect("valid secret");
        assert_eq!(
            to_hex_address(&got),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn round_trip_with_another_key_recovers_its_address() {
        let key = secret("0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f");
        let expected = address_of_secret(&key).expect("valid secret");
        let message = "Link wallet to Discord user 123456789012345678\nnonce: 9f2c\n";
        let sig = sign_personal(&key, message).expect("signs");
        assert_eq!(sig.len(), 132);
        assert!(sig.starts_with("0x"));
        assert!(
            sig[2..]
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        let v = sig_bytes(&sig)[64];
        assert!(v == 27 || v == 28, "v = {v}");
        assert_eq!(recover_personal_sign(message, &sig), Ok(expected));
    }

    #[test]
    fn round_trip_of_empty_message() {
        let key = secret("0x0000000000000000000000000000000000000000000000000000000000000002");
        let sig = sign_personal(&key, "").expect("signs");
        assert_eq!(
            recover_personal_sign("", &sig).map(|a| to_hex_address(&a)),
            Ok("0x2b5ad5c4795c026514f8317c7a215e218dccd6cf".to_owned())
        );
    }

    #[test]
    fn v_written_as_zero_or_one_is_accepted() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        bytes[64] -= 27;
        assert_eq!(bytes[64], 1);
        let sig = encode_hex(&bytes);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &sig),
            Ok(address(WEB3_ADDRESS))
        );
    }

    #[test]
    fn signature_of_a_different_message_recovers_a_different_address() {
        let got = recover_personal_sign("Some data!", WEB3_SIGNATURE);
        // Recovery still succeeds: any valid (r, s, v) yields *some* key, which
        // is why callers must compare with the claimed address.
        assert!(
            matches!(got, Ok(a) if a != address(WEB3_ADDRESS)),
            "{got:?}"
        );
        let other = sign_personal(&secret(WEB3_SECRET), "Other data").expect("signs");
        let got = recover_personal_sign(WEB3_MESSAGE, &other);
        assert!(got.is_ok(), "{got:?}");
        assert_ne!(got, Ok(address(WEB3_ADDRESS)));
    }

    #[test]
    fn flipped_byte_in_r_or_s_fails_or_recovers_a_different_address() {
        let original = sig_bytes(WEB3_SIGNATURE);
        for i in 0..64 {
            for mask in [0x01u8, 0x80] {
                let mut bytes = original;
                bytes[i] ^= mask;
                let got = recover_personal_sign(WEB3_MESSAGE, &encode_hex(&bytes));
                assert_ne!(got, Ok(address(WEB3_ADDRESS)), "byte {i} mask {mask:#x}");
            }
        }
    }

    #[test]
    fn flipped_v_recovers_a_different_address() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        bytes[64] = 27; // documented v is 28
        let got = recover_personal_sign(WEB3_MESSAGE, &encode_hex(&bytes));
        assert_ne!(got, Ok(address(WEB3_ADDRESS)));
    }

    #[test]
    fn high_s_twin_is_refused_with_high_s() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        let mut s = [0u8; 32];
        s.copy_from_slice(&bytes[32..64]);
        bytes[32..64].copy_from_slice(&sub_be(&N, &s));
        bytes[64] = if bytes[64] == 27 { 28 } else { 27 };
        let twin = encode_hex(&bytes);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &twin),
            Err(SignatureError::HighS)
        );
        // The same twin with v given as a bare recovery id is refused too.
        bytes[64] -= 27;
        let twin = encode_hex(&bytes);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &twin),
            Err(SignatureError::HighS)
        );
    }

    #[test]
    fn sign_personal_always_produces_low_s() {
        let half_n = {
            // n is odd, so n/2 rounded down is (n - 1) / 2: shift right by one.
            let mut h = [0u8; 32];
            let mut carry = 0u8;
            for (i, &b) in N.iter().enumerate() {
                h[i] = (b >> 1) | (carry << 7);
                carry = b & 1;
            }
            h
        };
        let key = secret(WEB3_SECRET);
        for i in 0..16 {
            let sig = sig_bytes(&sign_personal(&key, &format!("message {i}")).expect("signs"));
            assert!(sig[32..64] <= half_n[..], "message {i} has high s");
        }
    }

    #[test]
    fn wrong_lengths_are_malformed() {
        let full = WEB3_SIGNATURE.trim_start_matches("0x");
        for bad in [
            String::new(),
            "0x".to_owned(),
            format!("0x{}", &full[..128]),
            format!("0x{}", &full[..129]),
            format!("0x{full}0"),
            format!("0x{full}00"),
            format!("0x0x{full}"),
            format!("{full}{full}"),
        ] {
            assert!(
                matches!(parse_signature(&bad), Err(SignatureError::Malformed(_))),
                "{bad:?}"
            );
            assert!(
                matches!(
                    recover_personal_sign(WEB3_MESSAGE, &bad),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_hex_characters_are_malformed() {
        let full = WEB3_SIGNATURE.trim_start_matches("0x");
        let with_g = format!("0xg{}", &full[1..]);
        let with_space = format!("0x {}", &full[1..]);
        // Same length in bytes as a valid signature, but with a 2-byte char.
        let with_unicode = format!("0xé{}", &full[2..]);
        // Right number of characters but not of bytes.
        let unicode_chars = format!("0x{}é", &full[1..]);
        for bad in [
            with_g,
            with_space,
            with_unicode,
            unicode_chars,
            "0x".to_owned() + &"z".repeat(130),
        ] {
            assert!(
                matches!(
                    recover_personal_sign(WEB3_MESSAGE, &bad),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v_of_29_and_other_values_are_malformed() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        for v in [2u8, 3, 26, 29, 35, 36, 0xff] {
            bytes[64] = v;
            let sig = encode_hex(&bytes);
            assert!(
                matches!(
                    recover_personal_sign(WEB3_MESSAGE, &sig),
                    Err(SignatureError::Malformed(_))
                ),
                "v = {v}"
            );
        }
    }

    #[test]
    fn r_of_zero_is_invalid() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        bytes[..32].fill(0);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &encode_hex(&bytes)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn s_of_zero_is_invalid() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        bytes[32..64].fill(0);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &encode_hex(&bytes)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn r_at_or_above_curve_order_is_invalid() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        bytes[..32].copy_from_slice(&N);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &encode_hex(&bytes)),
            Err(SignatureError::Invalid)
        );
        bytes[..32].fill(0xff);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &encode_hex(&bytes)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn s_at_or_above_curve_order_is_invalid() {
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        bytes[32..64].copy_from_slice(&N);
        assert_eq!(
            recover_personal_sign(WEB3_MESSAGE, &encode_hex(&bytes)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn invalid_secrets_are_refused() {
        assert_eq!(address_of_secret(&[0u8; 32]), Err(SignatureError::Invalid));
        assert_eq!(address_of_secret(&N), Err(SignatureError::Invalid));
        assert_eq!(
            sign_personal(&[0xff; 32], "x"),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn parse_signature_returns_v_as_given() {
        let bytes = sig_bytes(WEB3_SIGNATURE);
        assert_eq!(bytes[0], 0xb9);
        assert_eq!(bytes[63], 0x29);
        assert_eq!(bytes[64], 0x1c);
    }

    #[test]
    fn addresses_round_trip_in_any_case_and_refuse_bad_input() {
        let a = address(WEB3_ADDRESS);
        assert_eq!(to_hex_address(&a), WEB3_ADDRESS);
        // EIP-55 checksummed spelling parses to the same bytes.
        assert_eq!(
            parse_address("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"),
            Some(a)
        );
        assert_eq!(
            parse_address("2C7536E3605D9C16A7A3D7B1898E529396A65C23"),
            Some(a)
        );
        for bad in [
            "",
            "0x",
            "0x2c7536e3605d9c16a7a3d7b1898e529396a65c2",
            "0x2c7536e3605d9c16a7a3d7b1898e529396a65c230",
            "0x2c7536e3605d9c16a7a3d7b1898e529396a65cg3",
            "0x2c7536e3605d9c16a7a3d7b1898e529396a65cé",
        ] {
            assert_eq!(parse_address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let short = parse_signature("0x1234").expect_err("too short");
        assert!(short.to_string().contains("130 hex digits"), "{short}");
        let mut bytes = sig_bytes(WEB3_SIGNATURE);
        bytes[64] = 29;
        let v = parse_signature(&encode_hex(&bytes)).expect_err("bad v");
        assert!(v.to_string().contains("got 29"), "{v}");
        assert!(SignatureError::HighS.to_string().contains("high s"));
    }
}
