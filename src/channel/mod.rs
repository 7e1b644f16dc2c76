//! The channel domain: redeem-script templates, PSBT rules, signatures,
//! finalization and signing.
