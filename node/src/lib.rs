//! tradeloop node (consensus and networking arrive in later issues).
#![warn(missing_docs)]
