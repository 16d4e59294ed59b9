//! Container ids and generated names.
//!
//! An id is 32 random bytes from the kernel's CSPRNG (`getrandom(2)`), shown
//! as 64 hex characters. A name the user did not choose is `adjective_surname`,
//! as docker makes them, from the lists below (surnames of people who shaped
//! operating systems and computing).

use rand::seq::SliceRandom;
use rand::RngCore;

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "bright", "busy", "calm", "clever", "cool", "crisp", "curious",
    "daring", "eager", "earnest", "elastic", "epic", "fair", "fervent", "fond", "frosty",
    "gallant", "gentle", "happy", "hardy", "humble", "jolly", "keen", "kind", "lively", "loyal",
    "lucid", "merry", "modest", "nimble", "noble", "patient", "placid", "polite", "proud", "quick",
    "quiet", "rapid", "serene", "sharp", "silent", "sleepy", "steady", "stoic", "sturdy", "swift",
    "tender", "tidy", "trusty", "upbeat", "vibrant", "vivid", "wise", "witty", "zealous", "zen",
    "zesty",
];

const SURNAMES: &[&str] = &[
    "allen",
    "babbage",
    "backus",
    "bell",
    "bosack",
    "cerf",
    "codd",
    "corbato",
    "cray",
    "dijkstra",
    "engelbart",
    "floyd",
    "hamilton",
    "hopper",
    "kahn",
    "kay",
    "kernighan",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "mccarthy",
    "mcilroy",
    "metcalfe",
    "minsky",
    "moore",
    "naur",
    "neumann",
    "ossanna",
    "pike",
    "postel",
    "ritchie",
    "shannon",
    "stallman",
    "sutherland",
    "tanenbaum",
    "thompson",
    "torvalds",
    "turing",
    "wirth",
    "wozniak",
    "perlman",
    "goldberg",
    "hoare",
    "joy",
    "bach",
    "cutler",
    "dennard",
    "feigenbaum",
    "hellman",
    "karp",
    "lampson",
    "milner",
    "rivest",
    "shamir",
    "tarjan",
    "ullman",
    "wilkes",
    "yao",
    "zuse",
];

/// A new random container id: 64 lowercase hex characters.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A random `adjective_surname`; after `attempt` failed tries (the name was
/// taken) a digit is appended, as docker does.
pub fn generate_name(attempt: u32) -> String {
    let mut rng = rand::thread_rng();
    let adjective = ADJECTIVES.choose(&mut rng).expect("list is not empty");
    let surname = SURNAMES.choose(&mut rng).expect("list is not empty");
    if attempt == 0 {
        format!("{adjective}_{surname}")
    } else {
        format!("{adjective}_{surname}{}", rand::random::<u8>() % 10)
    }
}

/// Docker's rule for user-given names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest =
        name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid_first && valid_rest {
        Ok(())
    } else {
        Err(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn generated_names_are_valid_names() {
        for attempt in 0..20 {
            let name = generate_name(attempt);
            validate_name(&name).unwrap();
            assert!(name.contains('_'));
        }
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("-web").is_err());
        assert!(validate_name("a").is_err());
        assert!(validate_name("we b").is_err());
        assert!(validate_name("../x").is_err());
    }
}
