//! Where the visual tokens sit in a prompt: one or several visual spans inside a token sequence.
//!
//! The official code assumes `pre-prompt | one image of 576 tokens | text` and reads a single `v_start`
//! (algorithm.md §0.2). This layout is the general index-set form of algorithm.md §8.2 / §8.5: any number of
//! images, text before, between or after them. Tokens outside the spans are text and are never pruned; the
//! text after the last image is where raters come from.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SparseError};

/// A half-open range `[start, end)` of token indices holding one image's visual tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// The token layout of one sample's prompt, before any pruning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLayout {
    seq_len: usize,
    visual: Vec<Span>,
}

impl TokenLayout {
    /// A layout of `seq_len` tokens whose visual tokens are `spans` (sorted, disjoint, non-empty, in range).
    pub fn new(seq_len: usize, spans: Vec<Span>) -> Result<Self> {
        if spans.is_empty() {
            return Err(SparseError::InvalidLayout("a prompt needs at least one visual span".into()));
        }
        let mut previous_end = 0;
        for (i, span) in spans.iter().enumerate() {
            if span.end <= span.start {
                return Err(SparseError::InvalidLayout(format!("visual span {i} ({span:?}) is empty or reversed")));
            }
            if i > 0 && span.start < previous_end {
                return Err(SparseError::InvalidLayout(format!(
                    "visual span {i} ({span:?}) overlaps or precedes the previous span, which ends at {previous_end}"
                )));
            }
            if span.end > seq_len {
                return Err(SparseError::InvalidLayout(format!(
                    "visual span {i} ({span:?}) runs past the end of the {seq_len}-token sequence"
                )));
            }
            previous_end = span.end;
        }
        Ok(TokenLayout { seq_len, visual: spans })
    }

    /// The LLaVA-1.5 layout: `pre` prompt tokens, `n_visual` image tokens, then `text_after` tokens.
    pub fn single_image(pre: usize, n_visual: usize, text_after: usize) -> Result<Self> {
        TokenLayout::new(pre + n_visual + text_after, vec![Span { start: pre, end: pre + n_visual }])
    }

    /// Total number of tokens.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The visual spans, in order.
    pub fn visual_spans(&self) -> &[Span] {
        &self.visual
    }

    /// Number of visual tokens over all spans.
    pub fn n_visual(&self) -> usize {
        self.visual.iter().map(Span::len).sum()
    }

    /// Indices of all visual tokens, ascending.
    pub fn visual_indices(&self) -> Vec<usize> {
        self.visual.iter().flat_map(Span::range).collect()
    }

    /// Whether token `index` is visual.
    pub fn is_visual(&self, index: usize) -> bool {
        self.visual.iter().any(|s| s.range().contains(&index))
    }

    /// The text after the last image: the rater candidates (algorithm.md §2.2, §8.2).
    pub fn text_after_images(&self) -> Range<usize> {
        let last_end = self.visual.last().map_or(0, |s| s.end);
        last_end..self.seq_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llava_layout_has_the_official_offsets() {
        // p3_sys_q60: P = 26, V = 576, T = 59 -> L = 661, t_start = 602.
        let layout = TokenLayout::single_image(26, 576, 59).unwrap();
        assert_eq!(layout.seq_len(), 661);
        assert_eq!(layout.n_visual(), 576);
        assert_eq!(layout.text_after_images(), 602..661);
        assert!(layout.is_visual(26) && layout.is_visual(601) && !layout.is_visual(602) && !layout.is_visual(25));
    }

    #[test]
    fn several_images_with_text_between() {
        let spans = vec![Span { start: 3, end: 7 }, Span { start: 9, end: 12 }];
        let layout = TokenLayout::new(15, spans).unwrap();
        assert_eq!(layout.visual_indices(), vec![3, 4, 5, 6, 9, 10, 11]);
        assert_eq!(layout.text_after_images(), 12..15);
        assert!(!layout.is_visual(8));
    }

    #[test]
    fn malformed_layouts_are_errors() {
        assert!(TokenLayout::new(10, vec![]).is_err());
        assert!(TokenLayout::new(10, vec![Span { start: 4, end: 4 }]).is_err());
        assert!(TokenLayout::new(10, vec![Span { start: 4, end: 11 }]).is_err());
        let overlapping = vec![Span { start: 1, end: 5 }, Span { start: 4, end: 6 }];
        assert!(TokenLayout::new(10, overlapping).is_err());
    }
}
