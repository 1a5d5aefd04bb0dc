//! A set of row positions in `[0, len)` as a bitmap with a rank directory: the storage of
//! select (filter) maps. Built from a boolean mask at memory speed, encoded by copying
//! its words, and answering rank (input -> output) and select (output -> input) queries.

use crate::search::gallop;

/// Words per rank block: the directory costs one u64 per 512 rows.
const BLOCK_WORDS: usize = 8;

/// A bitmap over `[0, len)` with the number of ones before each block of words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bitset {
    len: u64,
    words: Vec<u64>,
    /// `block_ones[b]` = ones before word `b * BLOCK_WORDS`; one extra entry holds the total.
    block_ones: Vec<u64>,
}

impl Bitset {
    /// From words whose bits at and beyond `len` are zero.
    pub(crate) fn from_words(len: u64, words: Vec<u64>) -> Bitset {
        debug_assert_eq!(words.len() as u64, len.div_ceil(64));
        let mut block_ones = Vec::with_capacity(words.len() / BLOCK_WORDS + 2);
        let mut total = 0;
        for block in words.chunks(BLOCK_WORDS) {
            block_ones.push(total);
            total += block.iter().map(|w| w.count_ones() as u64).sum::<u64>();
        }
        block_ones.push(total);
        Bitset {
            len,
            words,
            block_ones,
        }
    }

    /// The positions where `mask` is true.
    pub(crate) fn from_mask(mask: &[bool]) -> Bitset {
        let words = mask.chunks(64).map(|chunk| {
            let mut word = 0u64;
            for (byte_index, eight) in chunk.chunks(8).enumerate() {
                word |= gather_eight(eight) << (8 * byte_index);
            }
            word
        });
        Bitset::from_words(mask.len() as u64, words.collect())
    }

    /// From strictly increasing positions, all below `len`.
    pub(crate) fn from_sorted_positions(positions: impl Iterator<Item = i64>, len: u64) -> Bitset {
        let mut words = vec![0u64; len.div_ceil(64) as usize];
        for position in positions {
            words[position as usize / 64] |= 1 << (position % 64);
        }
        Bitset::from_words(len, words)
    }

    /// From sorted disjoint half-open ranges `[start, end)`, all within `[0, len)`.
    pub(crate) fn from_ranges(ranges: impl Iterator<Item = (u64, u64)>, len: u64) -> Bitset {
        let mut words = vec![0u64; len.div_ceil(64) as usize];
        for (start, end) in ranges {
            let (first, last) = (start as usize / 64, (end - 1) as usize / 64);
            let low = u64::MAX << (start % 64);
            let high = u64::MAX >> (63 - (end - 1) % 64);
            if first == last {
                words[first] |= low & high;
            } else {
                words[first] |= low;
                words[first + 1..last].fill(u64::MAX);
                words[last] |= high;
            }
        }
        Bitset::from_words(len, words)
    }

    /// Size of the universe.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Number of positions in the set.
    pub(crate) fn count(&self) -> u64 {
        *self.block_ones.last().expect("block_ones is never empty")
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    /// Whether `position` (below `len`) is in the set.
    pub(crate) fn contains(&self, position: u64) -> bool {
        self.words[position as usize / 64] >> (position % 64) & 1 == 1
    }

    /// Number of set positions below `position` (at most `len`).
    pub(crate) fn rank(&self, position: u64) -> u64 {
        let word = position as usize / 64;
        let block = word / BLOCK_WORDS;
        let mut ones = self.block_ones[block];
        ones += self.words[block * BLOCK_WORDS..word]
            .iter()
            .map(|w| w.count_ones() as u64)
            .sum::<u64>();
        let bit = position % 64;
        if bit != 0 {
            ones += (self.words[word] & ((1u64 << bit) - 1)).count_ones() as u64;
        }
        ones
    }

    /// Positions of the `ranks`-th set positions, for strictly increasing `ranks` below
    /// [`Bitset::count`]; the block search gallops from the previous answer.
    pub(crate) fn select_sorted(&self, ranks: &[i64]) -> Vec<i64> {
        let mut positions = Vec::with_capacity(ranks.len());
        let mut block = 0;
        for &rank in ranks {
            let rank = rank as u64;
            // The block holding the rank: the last one whose count before it is <= rank.
            block = gallop(&self.block_ones, block, rank + 1) - 1;
            let mut remaining = rank - self.block_ones[block];
            let mut word = block * BLOCK_WORDS;
            loop {
                let ones = self.words[word].count_ones() as u64;
                if remaining < ones {
                    break;
                }
                remaining -= ones;
                word += 1;
            }
            positions.push(
                (word * 64) as i64 + select_in_word(self.words[word], remaining as u32) as i64,
            );
        }
        positions
    }

    /// Ones in each 2^16-position chunk that has any (the containers of a roaring set).
    pub(crate) fn chunk_counts(&self) -> impl Iterator<Item = u64> + '_ {
        const BLOCKS_PER_CHUNK: usize = (1 << 16) / 64 / BLOCK_WORDS;
        let blocks = self.block_ones.len() - 1;
        (0..blocks.div_ceil(BLOCKS_PER_CHUNK))
            .map(move |chunk| {
                let end = ((chunk + 1) * BLOCKS_PER_CHUNK).min(blocks);
                self.block_ones[end] - self.block_ones[chunk * BLOCKS_PER_CHUNK]
            })
            .filter(|&ones| ones > 0)
    }

    /// Word-level facts about the positions, without visiting them one by one: first and
    /// last position, number of maximal runs of consecutive positions, and the largest
    /// difference between neighbouring positions.
    pub(crate) fn shape(&self) -> Shape {
        let mut shape = Shape {
            first: None,
            last: 0,
            runs: 0,
            max_delta: 0,
        };
        let mut carry = 0u64; // top bit of the previous word, as bit 0
        let mut zeros_since_one = 0u64; // zeros after the last one seen
        for (index, &word) in self.words.iter().enumerate() {
            if word == 0 {
                zeros_since_one += 64;
                carry = 0;
                continue;
            }
            shape.runs += (word & !((word << 1) | carry)).count_ones() as u64;
            carry = word >> 63;
            let low = word.trailing_zeros() as u64;
            if shape.first.is_none() {
                shape.first = Some(index as u64 * 64 + low);
            } else {
                shape.max_delta = shape.max_delta.max(zeros_since_one + low + 1);
            }
            if word & (word - 1) != 0 {
                shape.max_delta = shape.max_delta.max(longest_zero_run_inside(word) + 1);
            }
            let high = 63 - word.leading_zeros() as u64;
            shape.last = index as u64 * 64 + high;
            zeros_since_one = 63 - high;
        }
        shape
    }

    /// The set positions, ascending.
    pub(crate) fn ones(&self) -> Ones<'_> {
        Ones {
            words: &self.words,
            index: 0,
            current: self.words.first().copied().unwrap_or(0),
        }
    }
}

/// See [`Bitset::shape`].
pub(crate) struct Shape {
    pub(crate) first: Option<u64>,
    pub(crate) last: u64,
    pub(crate) runs: u64,
    pub(crate) max_delta: u64,
}

/// Longest run of zeros between the lowest and the highest one of `word` (non-zero).
fn longest_zero_run_inside(word: u64) -> u64 {
    let trimmed = word >> word.trailing_zeros();
    if trimmed.count_ones() <= 8 {
        // Few ones: measure the gaps between them.
        let mut longest = 0;
        let mut previous = 0;
        let mut rest = trimmed & (trimmed - 1);
        while rest != 0 {
            let position = rest.trailing_zeros();
            longest = longest.max((position - previous - 1) as u64);
            previous = position;
            rest &= rest - 1;
        }
        return longest;
    }
    // Many ones: each step shortens every run of zeros by one.
    let span = 64 - trimmed.leading_zeros();
    let mut zeros = !trimmed
        & if span == 64 {
            u64::MAX
        } else {
            (1u64 << span) - 1
        };
    let mut longest = 0;
    while zeros != 0 {
        zeros &= zeros >> 1;
        longest += 1;
    }
    longest
}

/// Iterator over the set positions of a [`Bitset`].
#[derive(Clone)]
pub(crate) struct Ones<'a> {
    words: &'a [u64],
    index: usize,
    current: u64,
}

impl Iterator for Ones<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        while self.current == 0 {
            self.index += 1;
            self.current = *self.words.get(self.index)?;
        }
        let bit = self.current.trailing_zeros();
        self.current &= self.current - 1;
        Some((self.index * 64) as i64 + bit as i64)
    }
}

/// Eight booleans as the low 8 bits of a u64 (first boolean lowest).
fn gather_eight(eight: &[bool]) -> u64 {
    let mut bytes = [0u8; 8];
    for (byte, &flag) in bytes.iter_mut().zip(eight) {
        *byte = flag as u8;
    }
    // Byte k (0 or 1, at bit 8k) times 2^(7(7-k)) lands on bit 49 + k; the other partial
    // products fall on distinct bits below 49 or above 56, so nothing carries in.
    (u64::from_le_bytes(bytes).wrapping_mul(0x0002_0408_1020_4081) >> 49) & 0xFF
}

/// Bit index of the `rank`-th set bit of `word` (which has more than `rank` set bits).
fn select_in_word(mut word: u64, mut rank: u32) -> u32 {
    let mut position = 0;
    for half in [32, 16, 8, 4, 2, 1] {
        let low = (word & ((1u64 << half) - 1)).count_ones();
        if rank >= low {
            rank -= low;
            word >>= half;
            position += half;
        }
    }
    position
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_rank_select_agree_with_positions() {
        for len in [0usize, 1, 7, 63, 64, 65, 511, 512, 513, 2000] {
            let mask: Vec<bool> = (0..len)
                .map(|i| (i * 7919) % 11 < 4 || i % 97 == 3)
                .collect();
            let set = Bitset::from_mask(&mask);
            let positions: Vec<i64> = (0..len as i64).filter(|&i| mask[i as usize]).collect();
            assert_eq!(set.ones().collect::<Vec<_>>(), positions);
            assert_eq!(set.count(), positions.len() as u64);
            assert_eq!(
                set,
                Bitset::from_sorted_positions(positions.iter().copied(), len as u64)
            );
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for &p in &positions {
                match ranges.last_mut() {
                    Some((_, end)) if *end == p as u64 => *end += 1,
                    _ => ranges.push((p as u64, p as u64 + 1)),
                }
            }
            assert_eq!(set, Bitset::from_ranges(ranges.into_iter(), len as u64));
            let ranks: Vec<i64> = (0..positions.len() as i64).collect();
            assert_eq!(set.select_sorted(&ranks), positions);
            for i in 0..=len as u64 {
                assert_eq!(
                    set.rank(i),
                    positions.iter().filter(|&&p| (p as u64) < i).count() as u64
                );
            }
        }
    }

    #[test]
    fn shape_matches_positions() {
        for seed in 0..300u64 {
            let len = (seed * 37 % 700) as usize;
            let density = seed % 7;
            let mask: Vec<bool> = (0..len as u64)
                .map(|i| (i * 2654435761 + seed * 97) % 13 < density)
                .collect();
            let positions: Vec<u64> = (0..len as u64).filter(|&i| mask[i as usize]).collect();
            let shape = Bitset::from_mask(&mask).shape();
            assert_eq!(shape.first, positions.first().copied());
            assert_eq!(shape.last, positions.last().copied().unwrap_or(0));
            let runs = positions.windows(2).filter(|w| w[1] != w[0] + 1).count()
                + !positions.is_empty() as usize;
            assert_eq!(shape.runs, runs as u64);
            let max_delta = positions.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            assert_eq!(shape.max_delta, max_delta, "seed {seed}");
        }
    }

    #[test]
    fn select_in_word_finds_each_bit() {
        let word =
            0b1011_0000_0000_0000_0000_0000_0000_0000_0000_0001_0000_0000_0000_0000_1000_0101u64;
        let bits: Vec<u32> = (0..64).filter(|b| word >> b & 1 == 1).collect();
        for (rank, &bit) in bits.iter().enumerate() {
            assert_eq!(select_in_word(word, rank as u32), bit);
        }
    }
}
