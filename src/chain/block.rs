//! AuxPoW-aware Dogecoin block decoder (being written).
