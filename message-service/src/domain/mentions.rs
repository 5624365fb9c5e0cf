//! `@username` mentions.

use std::collections::BTreeSet;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The usernames a text mentions as `@username`, lowercased. An `@` inside
/// a word (an e-mail address) is not a mention. Trailing `.` and `-` are
/// also tried without, so "thanks @bob." mentions `bob` (and `bob.`, should
/// such a user exist).
pub fn mentioned_usernames(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut previous: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '@' && !previous.is_some_and(is_name_char) {
            let start = i + 1;
            let rest = &text[start..];
            let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            let name = rest[..len].to_ascii_lowercase();
            if !name.is_empty() {
                let trimmed = name.trim_end_matches(['.', '-']);
                if !trimmed.is_empty() {
                    names.insert(trimmed.to_owned());
                }
                names.insert(name);
            }
        }
        previous = Some(c);
    }
    names
}

/// The user ids of `members` (user id, username) mentioned in `text`, in
/// the order of `members`.
pub fn resolve<'a>(
    text: &str,
    members: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    if !text.contains('@') {
        return Vec::new();
    }
    let names = mentioned_usernames(text);
    members
        .into_iter()
        .filter(|(_, username)| names.contains(&username.to_ascii_lowercase()))
        .map(|(user_id, _)| user_id.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mentions_but_not_emails() {
        let names =
            mentioned_usernames("hi @bob and @Carol_1, mail dave@example.com; @ alone, @eve.");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["bob", "carol_1", "eve", "eve."]);
    }

    #[test]
    fn resolves_only_members() {
        let members = [("u1", "bob"), ("u2", "carol"), ("u3", "dan")];
        assert_eq!(resolve("@carol @zed @bob", members), ["u1", "u2"]);
        assert!(resolve("no mentions", members).is_empty());
    }
}
