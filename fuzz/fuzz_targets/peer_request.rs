//! Request-response between peers: by the first byte, `Request::decode` (even) or
//! `Response::decode` (odd) of the rest.
//!
//! Asserts: no panic and no allocation beyond the codec's limit; whatever decodes re-encodes to
//! exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_node::net::message::{Request, Response};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(request) = Request::decode(bytes) {
            let again = request.encode().unwrap_or_else(|e| panic!("{request:?}: {e}"));
            assert_eq!(again, bytes, "{request:?} re-encodes differently");
        }
    } else if let Ok(response) = Response::decode(bytes) {
        let again = response.encode().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, bytes, "a response re-encodes differently");
    }
});
