//! Parameters, read like UniValue: its getters' errors, `RPCTypeCheck`,
//! and the hash, transaction and address parsers the methods share.

use std::str::FromStr;

use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Transaction, Txid};
use serde_json::Value;

use crate::node::{codes, RpcFault};
use dogetower_core::chain::{Address, Network};

pub(crate) struct Params<'a>(pub &'a [Value]);

fn misc(message: &str) -> RpcFault {
    RpcFault::new(codes::MISC_ERROR, message)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<'a> Params<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The parameter at `index` when given (a JSON null counts as given).
    pub fn get(&self, index: usize) -> Option<&'a Value> {
        self.0.get(index)
    }

    /// -1 with the usage text unless `min..=max` parameters were given.
    pub fn arity(&self, min: usize, max: usize, usage: &str) -> Result<(), RpcFault> {
        if (min..=max).contains(&self.len()) {
            Ok(())
        } else {
            Err(misc(usage))
        }
    }

    /// `RPCTypeCheck`: -3 `Expected type X, got Y` for the given parameters.
    pub fn type_check(&self, expected: &[&str]) -> Result<(), RpcFault> {
        for (value, expected) in self.0.iter().zip(expected) {
            let got = type_name(value);
            if got != *expected {
                return Err(RpcFault::new(
                    codes::TYPE_ERROR,
                    format!("Expected type {expected}, got {got}"),
                ));
            }
        }
        Ok(())
    }

    pub fn int(&self, index: usize) -> Result<i64, RpcFault> {
        get_int(
            self.get(index).unwrap_or(&Value::Null),
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        )
    }

    pub fn int64(&self, index: usize) -> Result<i64, RpcFault> {
        get_int(self.get(index).unwrap_or(&Value::Null), i64::MIN, i64::MAX)
    }

    pub fn real(&self, index: usize) -> Result<f64, RpcFault> {
        self.get(index)
            .and_then(Value::as_f64)
            .ok_or_else(|| misc("JSON value is not a number as expected"))
    }

    pub fn str(&self, index: usize) -> Result<&'a str, RpcFault> {
        self.get(index)
            .and_then(Value::as_str)
            .ok_or_else(|| misc("JSON value is not a string as expected"))
    }

    pub fn bool(&self, index: usize) -> Result<bool, RpcFault> {
        self.get(index)
            .and_then(Value::as_bool)
            .ok_or_else(|| misc("JSON value is not a boolean as expected"))
    }

    /// A flag given as a boolean or as a number (non-zero = true).
    pub fn flag(&self, index: usize) -> Result<bool, RpcFault> {
        match self.get(index) {
            Some(Value::Number(_)) => Ok(self.int(index)? != 0),
            _ => self.bool(index),
        }
    }
}

fn get_int(value: &Value, min: i64, max: i64) -> Result<i64, RpcFault> {
    let Value::Number(number) = value else {
        return Err(misc("JSON value is not an integer as expected"));
    };
    number
        .as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| misc("JSON integer out of range"))
}

/// `uint256S`: lenient hex (leading spaces, `0x`, the trailing 64 digits of
/// the leading hex run; anything unreadable is zero), as `getblock` reads.
pub(crate) fn lenient_hash(text: &str) -> BlockHash {
    let text = text.trim_start();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: String = text.chars().take_while(char::is_ascii_hexdigit).collect();
    let tail = &digits[digits.len().saturating_sub(64)..];
    let padded = format!("{tail:0>64}");
    BlockHash::from_str(&padded).unwrap_or_else(|_| BlockHash::from_byte_array([0; 32]))
}

pub(super) fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.len() % 2 == 0 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// `ParseHashV(…, "parameter 1")`.
pub(crate) fn parse_txid(params: &Params<'_>, index: usize) -> Result<Txid, RpcFault> {
    let text = params.get(index).and_then(Value::as_str).unwrap_or("");
    let name = format!("parameter {}", index + 1);
    if !is_hex(text) {
        return Err(RpcFault::new(
            codes::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{text}')"),
        ));
    }
    if text.len() != 64 {
        return Err(RpcFault::new(
            codes::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {})", text.len()),
        ));
    }
    Txid::from_str(text).map_err(|e| RpcFault::new(codes::INVALID_PARAMETER, e.to_string()))
}

/// `DecodeHexTx`.
pub(super) fn decode_tx(text: &str) -> Result<Transaction, RpcFault> {
    let fail = || RpcFault::new(codes::DESERIALIZATION_ERROR, "TX decode failed");
    if !is_hex(text) {
        return Err(fail());
    }
    let bytes = hex::decode(text).map_err(|_| fail())?;
    deserialize::<Transaction>(&bytes).map_err(|_| fail())
}

/// A regtest address, or -5 `Error: Invalid address`.
pub(crate) fn parse_address(text: &str) -> Result<Address, RpcFault> {
    Address::parse(text, Network::Regtest)
        .map_err(|_| RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_hashes_read_like_uint256s() {
        let zero = BlockHash::from_byte_array([0; 32]);
        assert_eq!(lenient_hash("00"), zero);
        assert_eq!(lenient_hash("zz"), zero);
        let full = "513a3efb68bdae6c176283873dae400211e4d4c07fb25da0eb0cdd000a45f809";
        assert_eq!(lenient_hash(full).to_string(), full);
        assert_eq!(lenient_hash(&format!("  0x{full}")).to_string(), full);
        assert_eq!(lenient_hash(&format!("{full}xyz")).to_string(), full);
        assert_eq!(
            lenient_hash(&format!("ab{full}")).to_string(),
            full,
            "the last 64 digits count"
        );
        assert_eq!(lenient_hash("1").to_string(), format!("{:0>64}", "1"));
    }

    #[test]
    fn univalue_getters() {
        let values = [
            Value::from("abc"),
            Value::from(1.5),
            Value::from(7),
            Value::from(5_000_000_000i64),
        ];
        let p = Params(&values);
        assert_eq!(
            p.int(0).unwrap_err().message,
            "JSON value is not an integer as expected"
        );
        assert_eq!(p.int(1).unwrap_err().message, "JSON integer out of range");
        assert_eq!(p.int(2).unwrap(), 7);
        assert_eq!(p.int(3).unwrap_err().message, "JSON integer out of range");
        assert_eq!(p.int64(3).unwrap(), 5_000_000_000);
        assert_eq!(
            p.bool(2).unwrap_err().message,
            "JSON value is not a boolean as expected"
        );
        assert_eq!(p.str(2).unwrap_err().code, -1);
        assert_eq!(
            Params(&[Value::from(1)])
                .type_check(&["string"])
                .unwrap_err()
                .message,
            "Expected type string, got number"
        );
        assert!(p.flag(2).unwrap());
    }

    #[test]
    fn transaction_hex_must_be_hex_and_whole() {
        assert_eq!(decode_tx("zz").unwrap_err().message, "TX decode failed");
        assert_eq!(decode_tx("0100").unwrap_err().code, -22);
        assert_eq!(decode_tx("").unwrap_err().code, -22);
    }
}
