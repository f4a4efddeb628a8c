//! A matrix inside a slice, read through its strides.

/// Where a (rows × cols) matrix lies in a slice: element (i, j) at `offset + i·rs + j·cs`.
/// A transpose, a block of rows or one head's columns inside a wider row are all views of
/// the same slice, so the kernels read and write them in place, without copies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl View {
    /// A contiguous (rows × cols) matrix at the start of its slice.
    pub(crate) fn dense(rows: usize, cols: usize) -> Self {
        Self {
            offset: 0,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Rows `from..to` of this matrix.
    pub(crate) fn rows(self, from: usize, to: usize) -> Self {
        Self {
            offset: self.offset + from * self.rs,
            rows: to - from,
            ..self
        }
    }

    /// The transpose: the same elements, rows and columns swapped.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// The index of element (i, j) in the slice.
    pub(crate) fn at(&self, i: usize, j: usize) -> usize {
        self.offset + i * self.rs + j * self.cs
    }

    /// Whether every element lies inside a slice of `len` values (strides are
    /// non-negative, so the last element is the farthest).
    pub(crate) fn fits(&self, len: usize) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.rs)
            .and_then(|r| r.checked_add((self.cols - 1).checked_mul(self.cs)?))
            .and_then(|o| o.checked_add(self.offset));
        last.is_some_and(|last| last < len)
    }

    /// Whether distinct (i, j) are distinct elements, which the parallel write-back needs:
    /// either the rows or the columns must not interleave.
    pub(crate) fn distinct(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        match (self.rows > 1, self.cols > 1) {
            (false, false) => true,
            (true, false) => self.rs > 0,
            (false, true) => self.cs > 0,
            (true, true) => {
                (self.cs > 0 && self.rs >= self.cs.saturating_mul(self.cols))
                    || (self.rs > 0 && self.cs >= self.rs.saturating_mul(self.rows))
            }
        }
    }
}
