//! The id an item is restored as under a `renamed` destination: its own, or
//! what the map gives it or its nearest renamed parent (a message follows
//! its mailbox, a mailbox its user).

/// Maps `id` through `map` (pairs of from and to ids).
pub fn target(id: &str, map: &[(String, String)]) -> String {
    if let Some((_, to)) = map.iter().find(|(from, _)| from == id) {
        return to.clone();
    }
    map.iter()
        .filter(|(from, _)| {
            let from = from.strip_suffix('/').unwrap_or(from);
            id.len() > from.len() && id.starts_with(from) && id.as_bytes()[from.len()] == b'/'
        })
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| {
            let from = from.strip_suffix('/').unwrap_or(from);
            let to = to.strip_suffix('/').unwrap_or(to);
            format!("{to}{}", &id[from.len()..])
        })
        .unwrap_or_else(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn follows_parents() {
        let u = "imap://alice@127.0.0.1:143";
        let map = vec![
            (format!("{u}/INBOX"), format!("{u}/Restored/INBOX")),
            (u.to_string(), "imap://bob@127.0.0.1:143".to_string()),
        ];
        assert_eq!(
            target(&format!("{u}/INBOX/;UIDVALIDITY=1/;UID=2"), &map),
            format!("{u}/Restored/INBOX/;UIDVALIDITY=1/;UID=2")
        );
        assert_eq!(
            target(&format!("{u}/INBOX/Sub"), &map),
            format!("{u}/Restored/INBOX/Sub")
        );
        assert_eq!(
            target(&format!("{u}/Sent"), &map),
            "imap://bob@127.0.0.1:143/Sent"
        );
        assert_eq!(
            target(&format!("{u}/INBOXES"), &map),
            "imap://bob@127.0.0.1:143/INBOXES"
        );
        assert_eq!(
            target("imap://carol@127.0.0.1:143", &map),
            "imap://carol@127.0.0.1:143"
        );
    }
}
