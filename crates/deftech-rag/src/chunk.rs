//! Structure-aware chunking: a document is cut into chunks along its structure — sections
//! (Markdown headings), then paragraphs, then sentences, then words — so that each chunk stays
//! within a token budget, never spans two sections, and overlaps the previous chunk of its
//! section by a few tokens.
//!
//! Every byte of the document lands in at least one chunk: chunks are byte ranges of the
//! document (`text == document[start..end]`), consecutive chunks of a section overlap, and the
//! ranges together cover the whole document. Each chunk keeps its location: the heading path
//! of its section.

/// Counts tokens the way the embedding model will (approximately is fine: budgets are limits
/// on what one embedding call receives).
pub trait TokenCounter {
    /// Tokens in `text`.
    fn count(&self, text: &str) -> usize;
}

/// Words and punctuation marks as tokens: a maximal run of alphanumeric characters is one
/// token, every other non-space character is one. Close to WordPiece / BPE counts for English
/// prose (they split rare words further, so keep budgets below the model's limit).
#[derive(Clone, Copy, Debug, Default)]
pub struct WordCounter;

impl TokenCounter for WordCounter {
    fn count(&self, text: &str) -> usize {
        let mut n = 0;
        let mut in_word = false;
        for c in text.chars() {
            if c.is_alphanumeric() || c == '_' {
                if !in_word {
                    n += 1;
                    in_word = true;
                }
            } else {
                in_word = false;
                if !c.is_whitespace() {
                    n += 1;
                }
            }
        }
        n
    }
}

/// The document's markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Paragraphs separated by blank lines.
    Plain,
    /// Markdown: ATX headings (`#` … `######`) open sections; fenced code blocks stay whole
    /// where the budget allows.
    Markdown,
}

/// Chunk sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkConfig {
    /// Most tokens in a chunk (overlap included).
    pub max_tokens: usize,
    /// Tokens repeated from the end of the previous chunk of the same section (at most half the
    /// budget).
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_tokens: 200,
            overlap_tokens: 24,
        }
    }
}

/// One chunk of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Position among the document's chunks.
    pub index: usize,
    /// Byte range in the document.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
    /// `document[start..end]`.
    pub text: String,
    /// Heading path of the section (`["Install", "On Linux"]`); empty before any heading.
    pub section: Vec<String>,
    /// Tokens, by the counter used.
    pub tokens: usize,
}

impl Chunk {
    /// The section path as one string (`Install › On Linux`), for citations.
    pub fn location(&self) -> String {
        self.section.join(" › ")
    }
}

/// A piece of text that is never cut (a paragraph, sentence or word), with its section.
#[derive(Debug)]
struct Unit {
    start: usize,
    end: usize,
    section: usize,
    tokens: usize,
}

/// A run of the document: a heading line, a paragraph, or a fenced code block.
struct Block {
    start: usize,
    heading: Option<(usize, String)>,
}

fn heading(line: &str) -> Option<(usize, String)> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    let level = t.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t', '\n', '\r']) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    Some((level, title.to_owned()))
}

/// Lines with their byte offsets (the newline included in the line's range).
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut pos = 0;
    text.split_inclusive('\n').map(move |l| {
        let at = pos;
        pos += l.len();
        (at, l)
    })
}

fn blocks(text: &str, format: Format) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut para: Option<usize> = None;
    let mut fence: Option<&str> = None;
    for (at, line) in lines(text) {
        let trimmed = line.trim();
        if format == Format::Markdown {
            if let Some(f) = fence {
                if trimmed.starts_with(f) {
                    fence = None;
                    out.push(Block {
                        start: para.take().unwrap_or(at),
                        heading: None,
                    });
                }
                continue;
            }
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                if let Some(s) = para.take() {
                    out.push(Block {
                        start: s,
                        heading: None,
                    });
                }
                fence = Some(&trimmed[..3]);
                para = Some(at);
                continue;
            }
            if let Some(h) = heading(line) {
                if let Some(s) = para.take() {
                    out.push(Block {
                        start: s,
                        heading: None,
                    });
                }
                out.push(Block {
                    start: at,
                    heading: Some(h),
                });
                continue;
            }
        }
        if trimmed.is_empty() {
            if let Some(s) = para.take() {
                out.push(Block {
                    start: s,
                    heading: None,
                });
            }
        } else if para.is_none() {
            para = Some(at);
        }
    }
    if let Some(s) = para {
        out.push(Block {
            start: s,
            heading: None,
        });
    }
    out
}

/// Boundaries inside `text[start..end]` where a sentence starts: after `.`, `!` or `?`
/// followed by whitespace, or after a newline, and after the whitespace that follows (a
/// sentence owns its trailing space, so the next one starts with a word).
fn sentence_cuts(text: &str, start: usize, end: usize) -> Vec<usize> {
    let b = &text.as_bytes()[start..end];
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ends = match b[i] {
            b'.' | b'!' | b'?' => i + 1 < b.len() && b[i + 1].is_ascii_whitespace(),
            b'\n' => true,
            _ => false,
        };
        i += 1;
        if ends {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && cuts.last() != Some(&(start + i)) {
                cuts.push(start + i);
            }
        }
    }
    cuts
}

/// Boundaries inside `text[start..end]` before each word (after whitespace).
fn word_cuts(text: &str, start: usize, end: usize) -> Vec<usize> {
    let s = &text[start..end];
    let mut cuts = Vec::new();
    let mut prev_space = false;
    for (i, c) in s.char_indices() {
        if !c.is_whitespace() && prev_space && i > 0 {
            cuts.push(start + i);
        }
        prev_space = c.is_whitespace();
    }
    cuts
}

/// Cuts `[start, end)` into pieces within `max` tokens: sentences, then words, then (for one
/// over-long word) characters.
fn split(
    text: &str,
    start: usize,
    end: usize,
    section: usize,
    max: usize,
    counter: &dyn TokenCounter,
    out: &mut Vec<Unit>,
) {
    let tokens = counter.count(&text[start..end]);
    if tokens <= max {
        out.push(Unit {
            start,
            end,
            section,
            tokens,
        });
        return;
    }
    let mut cuts = sentence_cuts(text, start, end);
    if cuts.is_empty() {
        cuts = word_cuts(text, start, end);
    }
    if cuts.is_empty() {
        // One token-dense run without spaces: cut at character boundaries into equal parts.
        let chars: Vec<usize> = text[start..end]
            .char_indices()
            .map(|(i, _)| start + i)
            .collect();
        let parts = tokens.div_ceil(max).max(2);
        let step = chars.len().div_ceil(parts).max(1);
        cuts = chars.iter().copied().step_by(step).skip(1).collect();
        if cuts.is_empty() {
            out.push(Unit {
                start,
                end,
                section,
                tokens,
            });
            return;
        }
    }
    let mut from = start;
    for cut in cuts.into_iter().chain(std::iter::once(end)) {
        if cut > from {
            split(text, from, cut, section, max, counter, out);
            from = cut;
        }
    }
}

/// Chunks a document. See the module documentation for the guarantees.
pub fn chunk(
    text: &str,
    format: Format,
    config: &ChunkConfig,
    counter: &dyn TokenCounter,
) -> Vec<Chunk> {
    let max = config.max_tokens.max(1);
    let overlap = config.overlap_tokens.min(max / 2);
    // Sections: heading paths; section 0 is the text before the first heading.
    let mut sections: Vec<Vec<String>> = vec![Vec::new()];
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut units: Vec<Unit> = Vec::new();
    let bs = blocks(text, format);
    for (k, b) in bs.iter().enumerate() {
        // Each block also owns the blank space up to the next block, so units tile the text.
        let start = if k == 0 { 0 } else { b.start };
        let end = bs.get(k + 1).map_or(text.len(), |n| n.start);
        if let Some((level, title)) = &b.heading {
            path.retain(|(l, _)| l < level);
            path.push((*level, title.clone()));
            sections.push(path.iter().map(|(_, t)| t.clone()).collect());
        }
        split(
            text,
            start,
            end,
            sections.len() - 1,
            max,
            counter,
            &mut units,
        );
    }
    if units.is_empty() && !text.is_empty() {
        units.push(Unit {
            start: 0,
            end: text.len(),
            section: 0,
            tokens: counter.count(text),
        });
    }

    let mut chunks: Vec<Chunk> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let section = units[i].section;
        // Overlap: trailing units of the previous chunk of the same section.
        let mut first = i;
        let mut tokens = 0;
        if overlap > 0 && i > 0 && units[i - 1].section == section {
            let mut j = i;
            while j > 0
                && units[j - 1].section == section
                && tokens + units[j - 1].tokens <= overlap
            {
                j -= 1;
                tokens += units[j].tokens;
            }
            first = j;
        }
        // The overlap gives way when it and the next unit do not fit together.
        while first < i && tokens + units[i].tokens > max {
            tokens -= units[first].tokens;
            first += 1;
        }
        let mut last = i;
        tokens += units[i].tokens;
        while last + 1 < units.len()
            && units[last + 1].section == section
            && tokens + units[last + 1].tokens <= max
        {
            last += 1;
            tokens += units[last].tokens;
        }
        let (start, end) = (units[first].start, units[last].end);
        chunks.push(Chunk {
            index: chunks.len(),
            start,
            end,
            text: text[start..end].to_owned(),
            section: sections[section].clone(),
            tokens,
        });
        i = last + 1;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOC: &str = "Intro line before any heading.\n\n# Install\n\nRun the installer. It asks two questions! \
        Answer them.\n\n## On Linux\n\nUse the package.\n\n```sh\napt-get install deftech\n```\n\n# Use\n\nAsk.\n";

    #[test]
    fn sections_follow_the_headings() {
        let cs = chunk(DOC, Format::Markdown, &ChunkConfig::default(), &WordCounter);
        let locs: Vec<String> = cs.iter().map(Chunk::location).collect();
        assert_eq!(locs, vec!["", "Install", "Install › On Linux", "Use"]);
        assert!(cs[2].text.contains("apt-get install deftech"));
        assert!(cs[1].text.starts_with("# Install"));
        assert_eq!(cs.iter().map(|c| c.text.as_str()).collect::<String>(), DOC);
    }

    #[test]
    fn long_paragraphs_split_at_sentences_with_overlap() {
        let para: String = (0..40)
            .map(|i| format!("Sentence number {i} says something. "))
            .collect();
        let cfg = ChunkConfig {
            max_tokens: 30,
            overlap_tokens: 6,
        };
        let cs = chunk(&para, Format::Plain, &cfg, &WordCounter);
        assert!(cs.len() > 5);
        for c in &cs {
            assert!(c.tokens <= 30, "{c:?}");
            assert_eq!(c.tokens, WordCounter.count(&c.text));
        }
        for w in cs.windows(2) {
            assert!(w[1].start < w[0].end, "consecutive chunks overlap");
            // The overlap is made of whole sentences.
            assert!(w[1].text.starts_with("Sentence"), "{:?}", w[1].text);
        }
    }

    #[test]
    fn counter_counts_words_and_punctuation() {
        assert_eq!(WordCounter.count("Hello, world."), 4);
        assert_eq!(WordCounter.count("  "), 0);
        assert_eq!(WordCounter.count("snake_case x2"), 2);
    }

    fn doc_strategy() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "[a-z]{1,12}",
            Just("#".to_owned()),
            Just("## Title".to_owned()),
            Just("```".to_owned()),
            Just(".".to_owned()),
            Just("!".to_owned()),
            Just("\n".to_owned()),
            Just("\n\n".to_owned()),
            Just("é".to_owned()),
            "[a-z]{30,80}",
        ];
        proptest::collection::vec((word, prop_oneof![Just(" "), Just(""), Just("\n")]), 0..300)
            .prop_map(|v| v.into_iter().map(|(w, s)| format!("{w}{s}")).collect())
    }

    proptest! {
        #[test]
        fn every_byte_lands_in_a_chunk_within_budget(
            doc in doc_strategy(),
            max in 1usize..60,
            overlap in 0usize..20,
            markdown in any::<bool>(),
        ) {
            let format = if markdown { Format::Markdown } else { Format::Plain };
            let cfg = ChunkConfig { max_tokens: max, overlap_tokens: overlap };
            let cs = chunk(&doc, format, &cfg, &WordCounter);
            let mut covered = 0;
            for (k, c) in cs.iter().enumerate() {
                prop_assert_eq!(c.index, k);
                prop_assert_eq!(&c.text, &doc[c.start..c.end]);
                prop_assert!(c.start <= covered, "gap before chunk {}: {} > {}", k, c.start, covered);
                prop_assert!(c.end > covered, "chunk {} adds nothing", k);
                covered = c.end;
                // Within budget unless a single unsplittable piece is larger.
                prop_assert!(c.tokens <= max || WordCounter.count(&c.text) <= max || c.text.split_whitespace().count() <= 1,
                    "chunk {} has {} tokens, budget {}: {:?}", k, c.tokens, max, c.text);
            }
            prop_assert_eq!(covered, doc.len());
        }
    }
}
