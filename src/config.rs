//! The TOML configuration file (being written).
