//! `hippo_dask._core`: Python bindings for `hippo-core`.
//!
//! This layer only converts: numpy int64 arrays in (zero-copy when contiguous) and out,
//! `bytes` in and out, and core errors to the exception classes of `hippo_dask.errors`.
//! Every O(n) call runs with the GIL released.

use std::borrow::Cow;

use hippo_core::{CoreError, RowMap};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
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

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
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
