//! Characters that must not appear in an identity a person reads: control
//! characters (category Cc) and Unicode format characters (category Cf:
//! bidi overrides such as U+202E, zero-width characters such as U+200B,
//! U+FEFF). A `sub` holding them can display as another caller's name in
//! logs, audit events and consoles.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` is a control character (Cc) or a format character (Cf).
pub fn is_control_or_format(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_caught_and_others_are_not() {
        for c in [
            '\0',
            '\n',
            '\t',
            '\u{7f}',
            '\u{85}', // Cc
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{ad}',
            '\u{e0001}', // Cf
        ] {
            assert!(is_control_or_format(c), "{:04x}", c as u32);
        }
        for c in [
            'a', 'Z', '0', '-', '_', ' ', 'é', 'ß', 'Ж', '中', '😀', '\u{a0}',
        ] {
            assert!(!is_control_or_format(c), "{:04x}", c as u32);
        }
    }
}
