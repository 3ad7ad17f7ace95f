//! Parses arbitrary text as an amount in currencies of every exponent class: errors are fine,
//! panics are not, and an amount that parses must format with its currency's exponent, read
//! back as itself and survive minor units (`switchyard::money::check_roundtrip`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::money::{Currency, check_roundtrip};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for code in ["JPY", "EUR", "BHD", "CLF"] {
        let Ok(currency) = Currency::from_code(code) else {
            panic!("{code} is missing from the table");
        };
        if let Err(problem) = check_roundtrip(text, currency) {
            panic!("{problem}");
        }
    }
    let _ = Currency::from_code(text);
});
