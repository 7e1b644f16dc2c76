//! Script reading the way Dogecoin Core 1.14 does it: `GetOp`, `Solver`
//! (output types), `ScriptToAsmStr`, push-only and minimal-push rules, and
//! strict DER signature encoding. rust-bitcoin's iterators hide the opcode a
//! push used, which the minimal-push rule and the asm output need.

use bitcoin::hashes::{hash160, Hash};
use bitcoin::{PubkeyHash, ScriptHash};

use dogetower_core::chain::address::{Address, AddressKind};
use dogetower_core::chain::Network;

const OP_0: u8 = 0x00;
const OP_PUSHDATA1: u8 = 0x4c;
const OP_PUSHDATA2: u8 = 0x4d;
const OP_PUSHDATA4: u8 = 0x4e;
const OP_1NEGATE: u8 = 0x4f;
const OP_1: u8 = 0x51;
const OP_16: u8 = 0x60;
const OP_RETURN: u8 = 0x6a;
const OP_DUP: u8 = 0x76;
const OP_EQUAL: u8 = 0x87;
const OP_EQUALVERIFY: u8 = 0x88;
const OP_HASH160: u8 = 0xa9;
const OP_CHECKSIG: u8 = 0xac;
const OP_CHECKMULTISIG: u8 = 0xae;

/// One parsed element: the opcode byte and, for pushes, the pushed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op<'a> {
    pub opcode: u8,
    pub data: &'a [u8],
}

impl Op<'_> {
    pub fn is_push(&self) -> bool {
        self.opcode <= OP_PUSHDATA4
    }
}

/// `CScript::GetOp` over a whole script; stops with `Err(())` at a push that
/// runs past the end.
pub fn ops(script: &[u8]) -> impl Iterator<Item = Result<Op<'_>, ()>> {
    let mut pc = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pc >= script.len() {
            return None;
        }
        let opcode = script[pc];
        pc += 1;
        if opcode > OP_PUSHDATA4 {
            return Some(Ok(Op { opcode, data: &[] }));
        }
        let len = match opcode {
            OP_PUSHDATA1 => read_len(script, &mut pc, 1),
            OP_PUSHDATA2 => read_len(script, &mut pc, 2),
            OP_PUSHDATA4 => read_len(script, &mut pc, 4),
            n => Some(n as usize),
        };
        match len.and_then(|len| script.get(pc..pc.checked_add(len)?)) {
            Some(data) => {
                pc += data.len();
                Some(Ok(Op { opcode, data }))
            }
            None => {
                failed = true;
                Some(Err(()))
            }
        }
    })
}

fn read_len(script: &[u8], pc: &mut usize, width: usize) -> Option<usize> {
    let bytes = script.get(*pc..*pc + width)?;
    *pc += width;
    Some(
        bytes
            .iter()
            .rev()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
    )
}

/// All elements, or `None` when the script does not parse.
pub fn parse(script: &[u8]) -> Option<Vec<Op<'_>>> {
    ops(script).collect::<Result<Vec<_>, ()>>().ok()
}

/// `IsPushOnly`: every opcode is at most OP_16 (OP_RESERVED included, as in Core).
pub fn is_push_only(script: &[u8]) -> bool {
    ops(script).all(|op| op.is_ok_and(|op| op.opcode <= OP_16))
}

/// The data pushed by a push-only script (OP_N pushes its number), or `None`.
pub fn push_values(script: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for op in ops(script) {
        let op = op.ok()?;
        match op.opcode {
            o if o <= OP_PUSHDATA4 => out.push(op.data.to_vec()),
            OP_1NEGATE => out.push(vec![0x81]),
            o @ OP_1..=OP_16 => out.push(vec![o - OP_1 + 1]),
            _ => return None,
        }
    }
    Some(out)
}

/// `CheckMinimalPush` for one push.
pub fn is_minimal_push(op: &Op<'_>) -> bool {
    let data = op.data;
    match data.len() {
        0 => op.opcode == OP_0,
        1 if (1..=16).contains(&data[0]) => op.opcode == OP_1 + data[0] - 1,
        1 if data[0] == 0x81 => op.opcode == OP_1NEGATE,
        n if n <= 75 => usize::from(op.opcode) == n,
        n if n <= 255 => op.opcode == OP_PUSHDATA1,
        n if n <= 65535 => op.opcode == OP_PUSHDATA2,
        _ => true,
    }
}

/// True when some push of `script` is not in its shortest form (MINIMALDATA).
pub fn has_non_minimal_push(script: &[u8]) -> bool {
    ops(script)
        .filter_map(Result::ok)
        .any(|op| op.is_push() && !is_minimal_push(&op))
}

/// `CScriptNum(vch, false).getint()` for pushes of up to 4 bytes.
pub fn script_num(data: &[u8]) -> i64 {
    let Some((last, _)) = data.split_last() else {
        return 0;
    };
    let mut value: i64 = 0;
    for (i, byte) in data.iter().enumerate() {
        value |= i64::from(*byte) << (8 * i);
    }
    if last & 0x80 != 0 {
        -(value & !(0x80i64 << (8 * (data.len() - 1))))
    } else {
        value
    }
}

/// `IsValidSignatureEncoding` (BIP66 strict DER, sighash byte included).
pub fn is_strict_der(sig: &[u8]) -> bool {
    if sig.len() < 9 || sig.len() > 73 || sig[0] != 0x30 || usize::from(sig[1]) != sig.len() - 3 {
        return false;
    }
    let len_r = usize::from(sig[3]);
    if 5 + len_r >= sig.len() {
        return false;
    }
    let len_s = usize::from(sig[5 + len_r]);
    if len_r + len_s + 7 != sig.len() || sig[2] != 0x02 || len_r == 0 || sig[4] & 0x80 != 0 {
        return false;
    }
    if len_r > 1 && sig[4] == 0 && sig[5] & 0x80 == 0 {
        return false;
    }
    if sig[len_r + 4] != 0x02 || len_s == 0 || sig[len_r + 6] & 0x80 != 0 {
        return false;
    }
    !(len_s > 1 && sig[len_r + 6] == 0 && sig[len_r + 7] & 0x80 == 0)
}

/// The sighash types `ScriptToAsmStr` knows by name.
pub fn sighash_name(byte: u8) -> Option<&'static str> {
    Some(match byte {
        0x01 => "ALL",
        0x81 => "ALL|ANYONECANPAY",
        0x02 => "NONE",
        0x82 => "NONE|ANYONECANPAY",
        0x03 => "SINGLE",
        0x83 => "SINGLE|ANYONECANPAY",
        _ => return None,
    })
}

/// True when the DER signature (sighash byte included) has S in the upper half.
pub fn is_high_s(sig: &[u8]) -> bool {
    let Some((_, der)) = sig.split_last() else {
        return false;
    };
    match bitcoin::secp256k1::ecdsa::Signature::from_der(der) {
        Ok(parsed) => {
            let mut normal = parsed;
            normal.normalize_s();
            normal != parsed
        }
        Err(_) => false,
    }
}

/// `CPubKey::IsValid`-style size check (the header byte fixes the length).
pub fn is_pubkey_shaped(data: &[u8]) -> bool {
    match data.first() {
        Some(0x02 | 0x03) => data.len() == 33,
        Some(0x04 | 0x06 | 0x07) => data.len() == 65,
        _ => false,
    }
}

/// Output script types (`txnouttype`), with what `Solver` extracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptType {
    NonStandard,
    PubKey(Vec<u8>),
    PubKeyHash(PubkeyHash),
    ScriptHash(ScriptHash),
    Multisig { required: u8, keys: Vec<Vec<u8>> },
    NullData,
    WitnessV0KeyHash,
    WitnessV0ScriptHash,
}

impl ScriptType {
    /// `GetTxnOutputType`.
    pub fn name(&self) -> &'static str {
        match self {
            ScriptType::NonStandard => "nonstandard",
            ScriptType::PubKey(_) => "pubkey",
            ScriptType::PubKeyHash(_) => "pubkeyhash",
            ScriptType::ScriptHash(_) => "scripthash",
            ScriptType::Multisig { .. } => "multisig",
            ScriptType::NullData => "nulldata",
            ScriptType::WitnessV0KeyHash => "witness_v0_keyhash",
            ScriptType::WitnessV0ScriptHash => "witness_v0_scripthash",
        }
    }

    /// `ExtractDestinations`: required signatures and addresses, or `None`
    /// for types without addresses.
    pub fn destinations(&self) -> Option<(u8, Vec<String>)> {
        let p2pkh = |key: &[u8]| {
            Address {
                network: Network::Regtest,
                kind: AddressKind::P2pkh(PubkeyHash::from_raw_hash(hash160::Hash::hash(key))),
            }
            .to_string()
        };
        match self {
            ScriptType::PubKey(key) if is_pubkey_shaped(key) => Some((1, vec![p2pkh(key)])),
            ScriptType::PubKeyHash(hash) => Some((
                1,
                vec![Address {
                    network: Network::Regtest,
                    kind: AddressKind::P2pkh(*hash),
                }
                .to_string()],
            )),
            ScriptType::ScriptHash(hash) => Some((
                1,
                vec![Address {
                    network: Network::Regtest,
                    kind: AddressKind::P2sh(*hash),
                }
                .to_string()],
            )),
            ScriptType::Multisig { required, keys } => {
                let addresses: Vec<String> = keys
                    .iter()
                    .filter(|k| is_pubkey_shaped(k))
                    .map(|k| p2pkh(k))
                    .collect();
                (!addresses.is_empty()).then_some((*required, addresses))
            }
            _ => None,
        }
    }

    /// `IsStandard` for an output script (witness programs are not standard
    /// while segwit is inactive, as on Dogecoin).
    pub fn is_standard_output(&self, script_len: usize) -> bool {
        match self {
            ScriptType::NonStandard | ScriptType::WitnessV0KeyHash | ScriptType::WitnessV0ScriptHash => false,
            ScriptType::Multisig { required, keys } => {
                let n = keys.len();
                (1..=3).contains(&n) && *required >= 1 && usize::from(*required) <= n
            }
            ScriptType::NullData => script_len <= 83,
            _ => true,
        }
    }
}

/// `Solver`: recognises the standard output templates.
pub fn solve(script: &[u8]) -> ScriptType {
    // Pay to script hash.
    if script.len() == 23 && script[0] == OP_HASH160 && script[1] == 0x14 && script[22] == OP_EQUAL {
        return ScriptType::ScriptHash(
            ScriptHash::from_slice(&script[2..22]).unwrap_or_else(|_| unreachable_hash()),
        );
    }
    // Witness programs: a version opcode and one 2..40-byte push.
    if (4..=42).contains(&script.len())
        && (script[0] == OP_0 || (OP_1..=OP_16).contains(&script[0]))
        && usize::from(script[1]) + 2 == script.len()
    {
        return match (script[0], script.len() - 2) {
            (OP_0, 20) => ScriptType::WitnessV0KeyHash,
            (OP_0, 32) => ScriptType::WitnessV0ScriptHash,
            _ => ScriptType::NonStandard,
        };
    }
    if script.first() == Some(&OP_RETURN) && is_push_only(&script[1..]) {
        return ScriptType::NullData;
    }
    let Some(ops) = parse(script) else {
        return ScriptType::NonStandard;
    };
    match ops.as_slice() {
        [key, Op {
            opcode: OP_CHECKSIG, ..
        }] if key.is_push() && (33..=65).contains(&key.data.len()) => ScriptType::PubKey(key.data.to_vec()),
        [Op { opcode: OP_DUP, .. }, Op {
            opcode: OP_HASH160, ..
        }, hash, Op {
            opcode: OP_EQUALVERIFY,
            ..
        }, Op {
            opcode: OP_CHECKSIG, ..
        }] if hash.is_push() && hash.data.len() == 20 => {
            ScriptType::PubKeyHash(PubkeyHash::from_slice(hash.data).unwrap_or_else(|_| unreachable_pkh()))
        }
        [m, keys @ .., n, Op {
            opcode: OP_CHECKMULTISIG,
            ..
        }] if (OP_1..=OP_16).contains(&m.opcode)
            && (OP_1..=OP_16).contains(&n.opcode)
            && !keys.is_empty()
            && keys
                .iter()
                .all(|k| k.is_push() && (33..=65).contains(&k.data.len())) =>
        {
            let required = m.opcode - OP_1 + 1;
            let count = n.opcode - OP_1 + 1;
            if usize::from(count) != keys.len() || required > count {
                return ScriptType::NonStandard;
            }
            ScriptType::Multisig {
                required,
                keys: keys.iter().map(|k| k.data.to_vec()).collect(),
            }
        }
        _ => ScriptType::NonStandard,
    }
}

// `from_slice` cannot fail on the exact lengths checked above; these keep
// the code free of panics all the same.
fn unreachable_hash() -> ScriptHash {
    ScriptHash::all_zeros()
}

fn unreachable_pkh() -> PubkeyHash {
    PubkeyHash::all_zeros()
}

/// `GetOpName` of Bitcoin Core 0.14 for a non-push opcode.
pub fn op_name(opcode: u8) -> &'static str {
    const NAMES: [&str; 89] = [
        "OP_NOP",
        "OP_VER",
        "OP_IF",
        "OP_NOTIF",
        "OP_VERIF",
        "OP_VERNOTIF",
        "OP_ELSE",
        "OP_ENDIF",
        "OP_VERIFY",
        "OP_RETURN",
        "OP_TOALTSTACK",
        "OP_FROMALTSTACK",
        "OP_2DROP",
        "OP_2DUP",
        "OP_3DUP",
        "OP_2OVER",
        "OP_2ROT",
        "OP_2SWAP",
        "OP_IFDUP",
        "OP_DEPTH",
        "OP_DROP",
        "OP_DUP",
        "OP_NIP",
        "OP_OVER",
        "OP_PICK",
        "OP_ROLL",
        "OP_ROT",
        "OP_SWAP",
        "OP_TUCK",
        "OP_CAT",
        "OP_SUBSTR",
        "OP_LEFT",
        "OP_RIGHT",
        "OP_SIZE",
        "OP_INVERT",
        "OP_AND",
        "OP_OR",
        "OP_XOR",
        "OP_EQUAL",
        "OP_EQUALVERIFY",
        "OP_RESERVED1",
        "OP_RESERVED2",
        "OP_1ADD",
        "OP_1SUB",
        "OP_2MUL",
        "OP_2DIV",
        "OP_NEGATE",
        "OP_ABS",
        "OP_NOT",
        "OP_0NOTEQUAL",
        "OP_ADD",
        "OP_SUB",
        "OP_MUL",
        "OP_DIV",
        "OP_MOD",
        "OP_LSHIFT",
        "OP_RSHIFT",
        "OP_BOOLAND",
        "OP_BOOLOR",
        "OP_NUMEQUAL",
        "OP_NUMEQUALVERIFY",
        "OP_NUMNOTEQUAL",
        "OP_LESSTHAN",
        "OP_GREATERTHAN",
        "OP_LESSTHANOREQUAL",
        "OP_GREATERTHANOREQUAL",
        "OP_MIN",
        "OP_MAX",
        "OP_WITHIN",
        "OP_RIPEMD160",
        "OP_SHA1",
        "OP_SHA256",
        "OP_HASH160",
        "OP_HASH256",
        "OP_CODESEPARATOR",
        "OP_CHECKSIG",
        "OP_CHECKSIGVERIFY",
        "OP_CHECKMULTISIG",
        "OP_CHECKMULTISIGVERIFY",
        "OP_NOP1",
        "OP_CHECKLOCKTIMEVERIFY",
        "OP_CHECKSEQUENCEVERIFY",
        "OP_NOP4",
        "OP_NOP5",
        "OP_NOP6",
        "OP_NOP7",
        "OP_NOP8",
        "OP_NOP9",
        "OP_NOP10",
    ];
    const NUMBERS: [&str; 16] = [
        "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    match opcode {
        OP_0 => "0",
        OP_PUSHDATA1 => "OP_PUSHDATA1",
        OP_PUSHDATA2 => "OP_PUSHDATA2",
        OP_PUSHDATA4 => "OP_PUSHDATA4",
        OP_1NEGATE => "-1",
        0x50 => "OP_RESERVED",
        OP_1..=OP_16 => NUMBERS[usize::from(opcode - OP_1)],
        0x61..=0xb9 => NAMES[usize::from(opcode - 0x61)],
        0xff => "OP_INVALIDOPCODE",
        _ => "OP_UNKNOWN",
    }
}

/// True for OP_NOP1 and OP_NOP4..OP_NOP10, which standard policy refuses to
/// execute (DISCOURAGE_UPGRADABLE_NOPS).
pub fn is_upgradable_nop(opcode: u8) -> bool {
    opcode == 0xb0 || (0xb3..=0xb9).contains(&opcode)
}

/// `ScriptToAsmStr`. With `decode_sighash`, data that is a strict-DER
/// signature with a known sighash byte ends in `[ALL]` etc. (scriptSigs).
pub fn to_asm(script: &[u8], decode_sighash: bool) -> String {
    let unspendable = script.first() == Some(&OP_RETURN);
    let mut out = String::new();
    for op in ops(script) {
        if !out.is_empty() {
            out.push(' ');
        }
        let Ok(op) = op else {
            out.push_str("[error]");
            break;
        };
        if !op.is_push() {
            out.push_str(op_name(op.opcode));
        } else if op.data.len() <= 4 {
            out.push_str(&script_num(op.data).to_string());
        } else if decode_sighash && !unspendable && is_strict_der(op.data) {
            let (last, body) = op.data.split_last().unwrap_or((&0, op.data));
            match sighash_name(*last) {
                Some(name) => {
                    out.push_str(&hex::encode(body));
                    out.push_str(&format!("[{name}]"));
                }
                None => out.push_str(&hex::encode(op.data)),
            }
        } else {
            out.push_str(&hex::encode(op.data));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asm_matches_the_recorded_decodescript() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/node/rpc/decodescript.json")).unwrap();
        let script = hex::decode(fixture["request"]["params"][0].as_str().unwrap()).unwrap();
        let result = &fixture["response"]["result"];
        assert_eq!(to_asm(&script, false), result["asm"].as_str().unwrap());
        assert_eq!(solve(&script).name(), result["type"].as_str().unwrap());
    }

    #[test]
    fn asm_decodes_signatures_in_script_sigs() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/node/rpc/getrawtransaction.verbose.json"
        ))
        .unwrap();
        let vin = &fixture["response"]["result"]["vin"][0]["scriptSig"];
        let script = hex::decode(vin["hex"].as_str().unwrap()).unwrap();
        assert_eq!(to_asm(&script, true), vin["asm"].as_str().unwrap());
        let vout = &fixture["response"]["result"]["vout"][0]["scriptPubKey"];
        let script = hex::decode(vout["hex"].as_str().unwrap()).unwrap();
        assert_eq!(to_asm(&script, false), vout["asm"].as_str().unwrap());
        let ty = solve(&script);
        assert_eq!(ty.name(), "pubkeyhash");
        assert_eq!(
            ty.destinations().unwrap().1,
            vec![vout["addresses"][0].as_str().unwrap().to_string()]
        );
        assert_eq!(to_asm(&[0x4c], false), "[error]");
        assert_eq!(to_asm(&[0x51, 0x4c], false), "1 [error]");
    }

    #[test]
    fn types_of_recorded_outputs() {
        let p2pk =
            hex::decode("21022d3a9e94e29117249617ea2ecbc37ec58ab0921cc458f832c43f14a8b1fe7599ac").unwrap();
        let ty = solve(&p2pk);
        assert_eq!(ty.name(), "pubkey");
        assert_eq!(
            ty.destinations().unwrap().1,
            vec!["n2c1FVLoLrNnJozVSd1aXB2Z7JgFcajCmT"]
        );
        let commitment =
            hex::decode("6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9")
                .unwrap();
        assert_eq!(solve(&commitment), ScriptType::NullData);
        assert!(solve(&commitment).destinations().is_none());
        assert_eq!(
            to_asm(&commitment, true),
            "OP_RETURN aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9"
        );
        let p2sh = hex::decode("a9146bf2e36656193d983b2bcc2b4c93f2d4e0a8e46b87").unwrap();
        assert_eq!(
            solve(&p2sh).destinations().unwrap().1,
            vec!["2N361FyzLvhBpYohGRS5jFQ7xojgo2mWphs"]
        );
        assert_eq!(solve(&[0x51]), ScriptType::NonStandard);
        assert!(!solve(&[0x51]).is_standard_output(1));
    }

    #[test]
    fn minimal_pushes_and_numbers() {
        assert!(!has_non_minimal_push(&[0x00, 0x51, 0x01, 0x20]));
        assert!(has_non_minimal_push(&[0x01, 0x02]), "0x02 must be OP_2");
        assert!(
            !has_non_minimal_push(&[0x01, 0x00]),
            "a 0x00 byte is not OP_0's empty push"
        );
        assert!(has_non_minimal_push(&[0x4c, 0x01, 0x20]));
        assert_eq!(script_num(&[0x90, 0x00]), 144);
        assert_eq!(script_num(&[0x81]), -1);
        assert_eq!(script_num(&[]), 0);
        assert!(is_push_only(&[0x00, 0x51, 0x02, 0xaa, 0xbb]));
        assert!(!is_push_only(&[0x00, 0x76]));
        assert!(!is_push_only(&[0x02, 0xaa]));
        assert_eq!(push_values(&[0x00, 0x52]).unwrap(), vec![vec![], vec![2]]);
    }

    #[test]
    fn strict_der() {
        let sig = hex::decode("3045022100f965c5f424650ad40783f46c0d7fe89ea3c16a17881841042e41b1780e15175d022062c9cdba6c2403a64cf16045214522e245fdb470033571de37607af0d6d4687601").unwrap();
        assert!(is_strict_der(&sig));
        assert!(!is_high_s(&sig));
        let mut negative_r = sig.clone();
        negative_r[5] = 0x80;
        negative_r[4] = 0x21;
        assert!(!is_strict_der(&negative_r[..negative_r.len() - 1]));
        assert!(!is_strict_der(&sig[..sig.len() - 2]));
    }
}
