//! `hippo_dask._core`: Python bindings for `hippo-core`.
//!
//! This layer only converts: numpy int64 arrays in (zero-copy when contiguous) and out,
//! `bytes` in and out, and core errors to the exception classes of `hippo_dask.errors`.
//! Every O(n) call runs with the GIL released.

use std::borrow::Cow;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hippo_core::trace::{self, Atom, Groups, Keep, Tuples, View};
use hippo_core::{CoreError, RowMap};
use numpy::ndarray::{Array2, ShapeBuilder};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyType};

/// Converts a core error to the matching `hippo_dask.errors` exception: `DecodeError` for
/// bad bytes, `LineageError` for invalid arguments, `QueryError` for out-of-range rows.
fn py_err(error: CoreError) -> PyErr {
    let class_name = match error {
        CoreError::Decode(_) => "DecodeError",
        CoreError::InvalidInput(_) => "LineageError",
        CoreError::OutOfRange { .. } => "QueryError",
    };
    Python::attach(|py| {
        let class = py
            .import("hippo_dask.errors")
            .and_then(|module| module.getattr(class_name))
            .and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, error.to_string()),
            Err(import_error) => PyRuntimeError::new_err(format!(
                "{error} (and hippo_dask.errors.{class_name} could not be loaded: {import_error})"
            )),
        }
    })
}

/// The array's values, borrowed when it is contiguous, copied only when it is not.
fn values<'a, T: numpy::Element + Copy>(array: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match array.as_slice() {
        Ok(slice) => Cow::Borrowed(slice),
        Err(_) => Cow::Owned(array.as_array().to_vec()),
    }
}

/// A numpy int64 array owned by Python.
type Int64Array<'py> = Bound<'py, PyArray1<i64>>;

fn to_numpy(py: Python<'_>, values: Vec<i64>) -> Int64Array<'_> {
    values.into_pyarray(py)
}

#[pyfunction]
fn encode_ids<'py>(py: Python<'py>, ids: PyReadonlyArray1<'py, i64>) -> Bound<'py, PyBytes> {
    let ids = values(&ids);
    let encoded = py.detach(|| hippo_core::encode_ids(&ids));
    PyBytes::new(py, &encoded)
}

#[pyfunction]
fn decode_ids<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Int64Array<'py>> {
    let ids = py.detach(|| hippo_core::decode_ids(data)).map_err(py_err)?;
    Ok(to_numpy(py, ids))
}

#[pyfunction]
fn encode_fragment<'py>(
    py: Python<'py>,
    arrays: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut named = Vec::with_capacity(arrays.len());
    for (name, array) in arrays.iter() {
        let name: String = name.extract()?;
        let array: PyReadonlyArray1<'py, i64> = array.extract()?;
        named.push((name, array));
    }
    let borrowed: Vec<(&str, Cow<[i64]>)> = named
        .iter()
        .map(|(name, array)| (name.as_str(), values(array)))
        .collect();
    let encoded = py.detach(|| {
        hippo_core::encode_fragment(borrowed.iter().map(|(name, array)| (*name, array.as_ref())))
    });
    Ok(PyBytes::new(py, &encoded))
}

#[pyfunction]
fn decode_fragment<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let arrays = py
        .detach(|| hippo_core::decode_fragment(data))
        .map_err(py_err)?;
    let dict = PyDict::new(py);
    for (name, array) in arrays {
        dict.set_item(name, to_numpy(py, array))?;
    }
    Ok(dict)
}

#[pyfunction]
fn checksum(py: Python<'_>, data: &[u8]) -> u64 {
    py.detach(|| hippo_core::checksum(data))
}

#[pyfunction]
fn group_csr<'py>(
    py: Python<'py>,
    codes: PyReadonlyArray1<'py, i64>,
    n_groups: u64,
) -> PyResult<(Int64Array<'py>, Int64Array<'py>)> {
    let codes = values(&codes);
    let csr = py
        .detach(|| hippo_core::group_csr(&codes, n_groups))
        .map_err(py_err)?;
    Ok((to_numpy(py, csr.offsets), to_numpy(py, csr.rows)))
}

#[pyfunction]
fn isin_sorted<'py>(
    py: Python<'py>,
    haystack: PyReadonlyArray1<'py, i64>,
    needles: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let (haystack, needles) = (values(&haystack), values(&needles));
    let mask = py
        .detach(|| hippo_core::isin_sorted(&haystack, &needles))
        .map_err(py_err)?;
    Ok(mask.into_pyarray(py))
}

/// A row mapping from an input of `n_in` rows to an output of `n_out` rows.
#[pyclass(name = "RowMap", module = "hippo_dask._core", frozen, eq)]
struct PyRowMap {
    map: RowMap,
}

impl PartialEq for PyRowMap {
    fn eq(&self, other: &PyRowMap) -> bool {
        self.map == other.map
    }
}

fn wrap(map: hippo_core::Result<RowMap>) -> PyResult<PyRowMap> {
    map.map(|map| PyRowMap { map }).map_err(py_err)
}

#[pymethods]
impl PyRowMap {
    #[staticmethod]
    fn identity(n: u64) -> PyResult<Self> {
        wrap(RowMap::identity(n))
    }

    #[staticmethod]
    fn offset(offset: u64, n_in: u64, n_out: u64) -> PyResult<Self> {
        wrap(RowMap::offset(offset, n_in, n_out))
    }

    #[staticmethod]
    fn select(py: Python<'_>, mask: PyReadonlyArray1<'_, bool>) -> PyResult<Self> {
        let mask = values(&mask);
        Ok(PyRowMap {
            map: py.detach(|| RowMap::select_mask(&mask)),
        })
    }

    #[staticmethod]
    fn select_ids(py: Python<'_>, kept: PyReadonlyArray1<'_, i64>, n_in: u64) -> PyResult<Self> {
        let kept = values(&kept);
        wrap(py.detach(|| RowMap::select_ids(kept.into_owned(), n_in)))
    }

    #[staticmethod]
    fn permutation(py: Python<'_>, order: PyReadonlyArray1<'_, i64>) -> PyResult<Self> {
        let order = values(&order);
        wrap(py.detach(|| RowMap::permutation(order.into_owned())))
    }

    #[staticmethod]
    fn expand(py: Python<'_>, counts: PyReadonlyArray1<'_, i64>) -> PyResult<Self> {
        let counts = values(&counts);
        wrap(py.detach(|| RowMap::expand(counts.into_owned())))
    }

    #[staticmethod]
    fn group(py: Python<'_>, codes: PyReadonlyArray1<'_, i64>, n_groups: u64) -> PyResult<Self> {
        let codes = values(&codes);
        wrap(py.detach(|| RowMap::group(codes.into_owned(), n_groups)))
    }

    #[staticmethod]
    fn pair(
        py: Python<'_>,
        out_rows: PyReadonlyArray1<'_, i64>,
        in_rows: PyReadonlyArray1<'_, i64>,
        n_out: u64,
        n_in: u64,
    ) -> PyResult<Self> {
        let (out_rows, in_rows) = (values(&out_rows), values(&in_rows));
        wrap(py.detach(|| RowMap::pair(&out_rows, &in_rows, n_out, n_in)))
    }

    #[staticmethod]
    #[pyo3(signature = (n_in, size, step = 1))]
    fn window(n_in: u64, size: u64, step: u64) -> PyResult<Self> {
        wrap(RowMap::window(n_in, size, step))
    }

    #[staticmethod]
    #[pyo3(signature = (n_in, n_out = 1))]
    fn all(n_in: u64, n_out: u64) -> PyResult<Self> {
        wrap(RowMap::all(n_in, n_out))
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.map.kind().name()
    }

    #[getter]
    fn n_in(&self) -> u64 {
        self.map.n_in()
    }

    #[getter]
    fn n_out(&self) -> u64 {
        self.map.n_out()
    }

    fn backward<'py>(
        &self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<Int64Array<'py>> {
        let rows = values(&rows);
        let inputs = py.detach(|| self.map.backward(&rows)).map_err(py_err)?;
        Ok(to_numpy(py, inputs))
    }

    fn forward<'py>(
        &self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<Int64Array<'py>> {
        let rows = values(&rows);
        let outputs = py.detach(|| self.map.forward(&rows)).map_err(py_err)?;
        Ok(to_numpy(py, outputs))
    }

    fn then(&self, py: Python<'_>, other: &PyRowMap) -> PyResult<Self> {
        wrap(py.detach(|| self.map.then(&other.map)))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let encoded = py.detach(|| self.map.to_bytes());
        PyBytes::new(py, &encoded)
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        wrap(py.detach(|| RowMap::from_bytes(data)))
    }

    #[getter]
    fn nbytes(&self, py: Python<'_>) -> usize {
        py.detach(|| self.map.nbytes())
    }

    /// Pickles as its bytes, so maps travel between Dask workers like any value.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let from_bytes = py.get_type::<PyRowMap>().getattr("from_bytes")?;
        Ok((from_bytes, (self.to_bytes(py),)))
    }

    fn __repr__(&self) -> String {
        self.map.to_string()
    }
}

// ------------------------------------------------------------------ trace engine

/// A numpy int64 matrix owned by Python.
type Int64Matrix<'py> = Bound<'py, PyArray2<i64>>;

/// The columns of a 2-d int64 array (rows x slots), borrowed when contiguous (Fortran
/// order, as `SlotRows` keeps them), copied otherwise.
fn columns_of<'a>(array: &'a PyReadonlyArray2<'_, i64>) -> (usize, Vec<Cow<'a, [i64]>>) {
    let view = array.as_array();
    let (n, width) = view.dim();
    let columns = (0..width)
        .map(|j| {
            let column = view.index_axis_move(numpy::ndarray::Axis(1), j);
            match column.to_slice() {
                Some(slice) => Cow::Borrowed(slice),
                None => Cow::Owned(column.to_vec()),
            }
        })
        .collect();
    (n, columns)
}

fn view_of<'a>(n: usize, columns: &'a [Cow<'a, [i64]>]) -> View<'a> {
    View::new(n, columns.iter().map(|c| c.as_ref()).collect()).expect("numpy columns have the array's length")
}

/// Tuples as a (rows x slots) Fortran-order numpy array, without a copy.
fn tuples_to_numpy(py: Python<'_>, tuples: Tuples) -> Int64Matrix<'_> {
    let (n, width) = (tuples.len(), tuples.width());
    let array = Array2::from_shape_vec((n, width).f(), tuples.into_data()).expect("tuples have n * width values");
    array.into_pyarray(py)
}

fn slot_rows_of<'py>(values: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray2<'py, i64>> {
    Ok(values.extract::<PyReadonlyArray2<'py, i64>>()?)
}

/// The distinct rows of a (rows x slots) int64 array: one slot as a sorted set, several in
/// order of first occurrence.
#[pyfunction]
fn unique_rows<'py>(py: Python<'py>, values: &Bound<'py, PyAny>) -> PyResult<Int64Matrix<'py>> {
    let values = slot_rows_of(values)?;
    let (n, columns) = columns_of(&values);
    let tuples = py.detach(|| trace::unique_rows(&view_of(n, &columns)));
    Ok(tuples_to_numpy(py, tuples))
}

/// Rows of `values` kept by `rows` (positions), `present` (any projected slot set) or
/// `equals` ((column, value)), columns `project`, distinct.
#[pyfunction]
#[pyo3(signature = (values, project, rows = None, present = false, equals = None))]
fn select_unique<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    project: Vec<usize>,
    rows: Option<PyReadonlyArray1<'py, i64>>,
    present: bool,
    equals: Option<(usize, i64)>,
) -> PyResult<Int64Matrix<'py>> {
    let values = slot_rows_of(values)?;
    let (n, columns) = columns_of(&values);
    let keep = match (rows, present, equals) {
        (None, false, None) => Keep::All,
        (Some(rows), false, None) => Keep::Rows(values_owned(&rows)),
        (None, true, None) => Keep::Present,
        (None, false, Some((column, value))) => Keep::Equals(column, value),
        _ => return Err(py_err(CoreError::InvalidInput("select_unique takes one of rows, present, equals".into()))),
    };
    let tuples = py
        .detach(|| trace::select_unique(&view_of(n, &columns), &keep, &project))
        .map_err(py_err)?;
    Ok(tuples_to_numpy(py, tuples))
}

fn values_owned(array: &PyReadonlyArray1<'_, i64>) -> Vec<i64> {
    values(array).into_owned()
}

/// The union of two duplicate-free (rows x slots) arrays with the same columns.
#[pyfunction]
fn union_rows<'py>(py: Python<'py>, a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>) -> PyResult<Int64Matrix<'py>> {
    let (a, b) = (slot_rows_of(a)?, slot_rows_of(b)?);
    let ((na, ca), (nb, cb)) = (columns_of(&a), columns_of(&b));
    let tuples = py
        .detach(|| trace::union_rows(&view_of(na, &ca), &view_of(nb, &cb)))
        .map_err(py_err)?;
    Ok(tuples_to_numpy(py, tuples))
}

/// The distinct values of column `column` of a (rows x slots) array other than MISSING, ascending.
#[pyfunction]
fn column_ids<'py>(py: Python<'py>, values: &Bound<'py, PyAny>, column: usize) -> PyResult<Int64Array<'py>> {
    let values = slot_rows_of(values)?;
    let (_, columns) = columns_of(&values);
    let column = columns
        .get(column)
        .ok_or_else(|| py_err(CoreError::InvalidInput(format!("column {column} does not exist"))))?;
    Ok(to_numpy(py, py.detach(|| trace::sorted_ids(column))))
}

/// The distinct values of int64 arrays, ascending (the union of sorted id sets).
#[pyfunction]
fn union_sorted<'py>(py: Python<'py>, parts: Vec<PyReadonlyArray1<'py, i64>>) -> PyResult<Int64Array<'py>> {
    let borrowed: Vec<Cow<[i64]>> = parts.iter().map(values).collect();
    let slices: Vec<&[i64]> = borrowed.iter().map(|c| c.as_ref()).collect();
    Ok(to_numpy(py, py.detach(|| trace::union_sorted(&slices))))
}

/// The window ids around `ids` in `[pos - before, pos + after]` (None: unbounded), given the
/// fragments' ends as (high, end) pairs sorted by high.
#[pyfunction]
#[pyo3(signature = (ids, before, after, ends))]
fn window_ids<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, i64>,
    before: Option<i64>,
    after: Option<i64>,
    ends: Vec<(i64, i64)>,
) -> PyResult<Int64Array<'py>> {
    let ids = values(&ids);
    Ok(to_numpy(py, py.detach(|| trace::window_ids(&ids, before, after, &ends))))
}

type PyAtom<'py> = (usize, Option<PyReadonlyArray1<'py, i64>>, Vec<(usize, i64)>);

fn atoms_of<'a>(atoms: &'a [(usize, Option<Cow<'a, [i64]>>, Vec<(usize, i64)>)]) -> Vec<Atom<'a>> {
    atoms
        .iter()
        .map(|(column, ids, conds)| Atom {
            column: *column,
            ids: ids.as_deref(),
            conds: conds.clone(),
        })
        .collect()
}

fn borrow_atoms<'a, 'py>(atoms: &'a [PyAtom<'py>]) -> Vec<(usize, Option<Cow<'a, [i64]>>, Vec<(usize, i64)>)> {
    atoms
        .iter()
        .map(|(column, ids, conds)| (*column, ids.as_ref().map(values), conds.clone()))
        .collect()
}

/// One registered table of a run: a (rows x slots) array, and for a group-by its members'
/// group ids with the lookup state built over them.
struct Table {
    values: Py<PyArray2<i64>>,
    gids: Option<Py<PyArray1<i64>>>,
    groups: Groups,
}

/// A run's loaded lineage maps for the trace engine: the result's slot table and each
/// group-by's members (borrowed from the numpy arrays, never copied) with the index from
/// group id to member rows, built once. Thread-safe; the GIL is released for every O(n) step.
#[pyclass(name = "TraceEngine", module = "hippo_dask._core", frozen)]
struct PyTraceEngine {
    tables: Mutex<HashMap<String, Arc<Table>>>,
}

impl PyTraceEngine {
    fn table(&self, key: &str) -> PyResult<Arc<Table>> {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables
            .get(key)
            .cloned()
            .ok_or_else(|| py_err(CoreError::InvalidInput(format!("no table {key:?} in the trace engine"))))
    }

    fn group_table(&self, key: &str) -> PyResult<Arc<Table>> {
        let table = self.table(key)?;
        if table.gids.is_none() {
            return Err(py_err(CoreError::InvalidInput(format!("table {key:?} has no group ids"))));
        }
        Ok(table)
    }
}

#[pymethods]
impl PyTraceEngine {
    #[new]
    fn new() -> Self {
        PyTraceEngine {
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// Registers (or replaces) table `key`: `values` (rows x slots, int64; Fortran order is
    /// borrowed as is) and, for group memberships, `gids` (one group id per row).
    #[pyo3(signature = (key, values, gids = None))]
    fn add_table(&self, key: String, values: Int64Matrix<'_>, gids: Option<Int64Array<'_>>) -> PyResult<()> {
        if let Some(g) = &gids {
            if g.len() != values.shape()[0] {
                return Err(py_err(CoreError::InvalidInput(format!(
                    "{} group ids for {} member rows",
                    g.len(),
                    values.shape()[0]
                ))));
            }
        }
        let table = Table {
            values: values.unbind(),
            gids: gids.map(Bound::unbind),
            groups: Groups::new(),
        };
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(table));
        Ok(())
    }

    /// Whether table `key` is registered.
    fn has_table(&self, key: &str) -> bool {
        self.tables.lock().unwrap_or_else(|p| p.into_inner()).contains_key(key)
    }

    /// Whether the group index of table `key` has been built.
    fn indexed(&self, key: &str) -> PyResult<bool> {
        Ok(self.table(key)?.groups.indexed())
    }

    /// Distinct tuples of rows `rows` (positions) of table `key`, all its columns.
    fn take_unique<'py>(&self, py: Python<'py>, key: &str, rows: PyReadonlyArray1<'py, i64>) -> PyResult<Int64Matrix<'py>> {
        let table = self.table(key)?;
        let matrix = table.values.bind(py).try_readonly()?;
        let (n, columns) = columns_of(&matrix);
        let keep = Keep::Rows(values_owned(&rows));
        let project: Vec<usize> = (0..columns.len()).collect();
        let tuples = py
            .detach(|| trace::select_unique(&view_of(n, &columns), &keep, &project))
            .map_err(py_err)?;
        Ok(tuples_to_numpy(py, tuples))
    }

    /// Distinct member tuples (columns `project`) of the groups `wanted` (sorted, distinct)
    /// of group table `key`; with `window=(before, after)`, of the windows around them.
    #[pyo3(signature = (key, wanted, project, window = None))]
    fn members_of<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        wanted: PyReadonlyArray1<'py, i64>,
        project: Vec<usize>,
        window: Option<(Option<i64>, Option<i64>)>,
    ) -> PyResult<Int64Matrix<'py>> {
        let table = self.group_table(key)?;
        let matrix = table.values.bind(py).try_readonly()?;
        let gids = table.gids.as_ref().expect("a group table").bind(py).try_readonly()?;
        let (n, columns) = columns_of(&matrix);
        let (gids, wanted) = (values(&gids), values(&wanted));
        let groups = &table.groups;
        let tuples = py
            .detach(|| {
                let wanted = match window {
                    None => wanted.into_owned(),
                    Some((before, after)) => trace::window_ids(&wanted, before, after, &groups.window_ends(&gids)),
                };
                groups.members_of(&view_of(n, &columns), &gids, &wanted, &project)
            })
            .map_err(py_err)?;
        Ok(tuples_to_numpy(py, tuples))
    }

    /// The window ids around `ids` (see `window_ids`), with group table `key`'s fragment ends.
    fn window_ids<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        ids: PyReadonlyArray1<'py, i64>,
        before: Option<i64>,
        after: Option<i64>,
    ) -> PyResult<Int64Array<'py>> {
        let table = self.group_table(key)?;
        let gids = table.gids.as_ref().expect("a group table").bind(py).try_readonly()?;
        let (gids, ids) = (values(&gids), values(&ids));
        let groups = &table.groups;
        let out = py.detach(|| trace::window_ids(&ids, before, after, &groups.window_ends(&gids)));
        Ok(to_numpy(py, out))
    }

    /// The distinct group ids (sorted) of the members of group table `key` that any atom
    /// `(column, ids or None, [(column, value), ...])` matches.
    fn matching_groups<'py>(&self, py: Python<'py>, key: &str, atoms: Vec<PyAtom<'py>>) -> PyResult<Int64Array<'py>> {
        let table = self.group_table(key)?;
        let matrix = table.values.bind(py).try_readonly()?;
        let gids = table.gids.as_ref().expect("a group table").bind(py).try_readonly()?;
        let (n, columns) = columns_of(&matrix);
        let gids = values(&gids);
        let borrowed = borrow_atoms(&atoms);
        let out = py
            .detach(|| trace::matching_values(&view_of(n, &columns), &atoms_of(&borrowed), &gids))
            .map_err(py_err)?;
        Ok(to_numpy(py, out))
    }

    /// For each set of atom indices, the rows (sorted) of table `key` that any of its atoms
    /// matches; each atom is evaluated once.
    fn evaluate_sets<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        atoms: Vec<PyAtom<'py>>,
        sets: Vec<Vec<usize>>,
    ) -> PyResult<Vec<Int64Array<'py>>> {
        let table = self.table(key)?;
        let matrix = table.values.bind(py).try_readonly()?;
        let (n, columns) = columns_of(&matrix);
        let borrowed = borrow_atoms(&atoms);
        let out = py
            .detach(|| trace::evaluate_sets(&view_of(n, &columns), &atoms_of(&borrowed), &sets))
            .map_err(py_err)?;
        Ok(out.into_iter().map(|rows| to_numpy(py, rows)).collect())
    }

    fn __repr__(&self) -> String {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<&String> = tables.keys().collect();
        keys.sort();
        format!("TraceEngine(tables={keys:?})")
    }
}

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(unique_rows, module)?)?;
    module.add_function(wrap_pyfunction!(select_unique, module)?)?;
    module.add_function(wrap_pyfunction!(union_rows, module)?)?;
    module.add_function(wrap_pyfunction!(column_ids, module)?)?;
    module.add_function(wrap_pyfunction!(union_sorted, module)?)?;
    module.add_function(wrap_pyfunction!(window_ids, module)?)?;
    module.add_class::<PyTraceEngine>()?;
    module.add_function(wrap_pyfunction!(encode_ids, module)?)?;
    module.add_function(wrap_pyfunction!(decode_ids, module)?)?;
    module.add_function(wrap_pyfunction!(encode_fragment, module)?)?;
    module.add_function(wrap_pyfunction!(decode_fragment, module)?)?;
    module.add_function(wrap_pyfunction!(checksum, module)?)?;
    module.add_function(wrap_pyfunction!(group_csr, module)?)?;
    module.add_function(wrap_pyfunction!(isin_sorted, module)?)?;
    module.add_class::<PyRowMap>()?;
    Ok(())
}
