// The one binding file: exposes the Eigen core (bpnet.hpp) to Python as
// bpnet._core (and the same code built for other instruction sets as
// bpnet._core_avx2 / bpnet._core_avx512; see CMakeLists.txt).
//
// Rules at this boundary:
// - arrays of the right dtype and C order cross without a copy; anything else
//   is rejected with a ValueError naming the argument (Python converts once,
//   visibly, before calling here);
// - arrays are checked here (dtype, layout, shape against the network); every
//   other rule (labels, rows, starts, tree nodes, lam, threads) is the core's;
// - the GIL is released only around pure C++ work, after all arguments have
//   been converted; the core never touches a Python object.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>

#include "bpnet/bpnet.hpp"
#include "core_instances.hpp"

// Compiled in core_f64.cpp and core_f32.cpp, not here.
BPNET_CORE_INSTANCES(extern, double)
BPNET_CORE_INSTANCES(extern, float)

#ifndef BPNET_MODULE_NAME
#define BPNET_MODULE_NAME _core
#endif
#ifndef BPNET_ISA
#define BPNET_ISA "baseline"
#endif

namespace py = pybind11;
using bpnet::Index;

namespace {

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Checks dtype, C order and shape of an array argument; expected dims of -1
// are free. Returns a pointer to its data (no copy).
template <typename T>
T* checked(const py::array& a, const char* name, std::vector<py::ssize_t> shape,
           bool writeable = false) {
  if (!a.dtype().equal(py::dtype::of<T>()))
    throw py::value_error(std::string(name) + " must have dtype " +
                          py::str(py::dtype::of<T>()).cast<std::string>() + "; got " +
                          dtype_str(a));
  if (a.ndim() != static_cast<py::ssize_t>(shape.size()))
    throw py::value_error(std::string(name) + " must be " + std::to_string(shape.size()) +
                          "-D; got shape " + shape_str(a));
  for (std::size_t i = 0; i < shape.size(); ++i)
    if (shape[i] >= 0 && a.shape(i) != shape[i]) {
      std::ostringstream s;
      s << name << " has shape " << shape_str(a) << "; expected (";
      for (std::size_t j = 0; j < shape.size(); ++j) {
        if (j) s << ", ";
        if (shape[j] >= 0)
          s << shape[j];
        else
          s << ":";
      }
      s << (shape.size() == 1 ? ",)" : ")");
      throw py::value_error(s.str());
    }
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) +
                          " must be C-contiguous; convert it once with numpy.ascontiguousarray");
  // NumPy's NPY_ARRAY_ALIGNED: the core dereferences T*, which must be aligned.
  constexpr int npy_array_aligned = 0x0100;
  if (!(a.flags() & npy_array_aligned))
    throw py::value_error(std::string(name) +
                          " is not aligned to its dtype; copy it once with numpy.array(" + name +
                          ")");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// Workspace: reusable buffers so repeated calls allocate nothing. The Python
// object holds one per precision; a call locks it (another thread using the
// same workspace at the same time gets a clear error, never a data race).
struct CoreWorkspace {
  bpnet::Workspace<double> f64;
  bpnet::Workspace<float> f32;
  template <typename T>
  bpnet::Workspace<T>& get();
};
template <>
bpnet::Workspace<double>& CoreWorkspace::get<double>() {
  return f64;
}
template <>
bpnet::Workspace<float>& CoreWorkspace::get<float>() {
  return f32;
}

template <typename T>
std::unique_lock<std::mutex> lock(bpnet::Workspace<T>& ws) {
  std::unique_lock<std::mutex> guard(ws.mutex, std::try_to_lock);
  if (!guard.owns_lock())
    throw py::value_error(
        "workspace is in use by another thread; give each thread its own workspace");
  return guard;
}

// Ctrl-C while the core runs: Python's own handler only sets a flag until the
// main thread runs bytecode again. The core polls this hook between row blocks
// on the calling thread; on the main thread, at most every 50 ms, it takes the
// GIL and runs Python's signal handlers. When one raises (KeyboardInterrupt),
// the core stops at its next block and the exception reaches the caller.
class SignalCheck {
 public:
  SignalCheck() : main_thread_(PyThread_get_thread_ident() == main_thread_ident()) {
    if (main_thread_)
      hook_ = [this] {
        const auto now = std::chrono::steady_clock::now();
        if (now < next_) return false;
        next_ = now + std::chrono::milliseconds(50);
        py::gil_scoped_acquire gil;
        return PyErr_CheckSignals() != 0;
      };
  }
  const bpnet::Interrupt* hook() const { return main_thread_ ? &hook_ : nullptr; }
  static unsigned long& main_thread_ident() {
    static unsigned long ident = 0;
    return ident;
  }

 private:
  bool main_thread_;
  std::chrono::steady_clock::time_point next_ = std::chrono::steady_clock::now();
  bpnet::Interrupt hook_;
};

// Runs f(interrupt hook) without the GIL; a Python exception raised by a
// signal handler meanwhile is re-raised here.
template <typename F>
auto without_gil(F&& f) {
  SignalCheck check;
  try {
    py::gil_scoped_release release;
    return f(check.hook());
  } catch (const bpnet::interrupted&) {
    throw py::error_already_set();
  }
}

// A sparse X crosses as the tuple (data, indices, indptr, (n_rows, n_cols)) of
// a SciPy CSR matrix: data of the working dtype, indices and indptr both
// int32 or both int64, each C-contiguous (no copy).
template <typename T>
bpnet::Csr<T> make_csr(const bpnet::Shape& shape, const py::tuple& t, Index& n_rows) {
  if (t.size() != 4)
    throw py::value_error("a sparse X must be (data, indices, indptr, shape); got " +
                          std::to_string(t.size()) + " items");
  const auto dims = t[3].cast<std::pair<Index, Index>>();
  n_rows = dims.first;
  if (dims.second != shape.n_inputs())
    throw py::value_error("X has shape (" + std::to_string(dims.first) + ", " +
                          std::to_string(dims.second) +
                          ") but layer_sizes[0] = " + std::to_string(shape.n_inputs()) + " inputs");
  const py::array data = py::cast<py::array>(t[0]), indices = py::cast<py::array>(t[1]),
                  indptr = py::cast<py::array>(t[2]);
  bpnet::Csr<T> c;
  c.values = checked<T>(data, "X.data", {-1});
  c.nnz = data.shape(0);
  c.n_cols = dims.second;
  c.wide = indices.dtype().equal(py::dtype::of<std::int64_t>());
  if (c.wide) {
    c.indices = checked<std::int64_t>(indices, "X.indices", {c.nnz});
    c.indptr = checked<std::int64_t>(indptr, "X.indptr", {n_rows + 1});
  } else {
    if (!indices.dtype().equal(py::dtype::of<std::int32_t>()))
      throw py::value_error("X.indices must have dtype int32 or int64; got " + dtype_str(indices));
    c.indices = checked<std::int32_t>(indices, "X.indices", {c.nnz});
    c.indptr = checked<std::int32_t>(indptr, "X.indptr", {n_rows + 1});
  }
  return c;
}

// The examples and targets of one call, checked against the network shape.
template <typename T>
bpnet::Data<T> make_data(const bpnet::Shape& shape, const py::object& X,
                         const std::optional<py::array>& y,
                         const std::optional<py::array>& sample_weight,
                         const std::optional<py::array>& rows) {
  bpnet::Data<T> d;
  if (py::isinstance<py::tuple>(X)) {
    d.csr = make_csr<T>(shape, py::cast<py::tuple>(X), d.n_rows);
  } else {
    const py::array Xa = py::cast<py::array>(X);
    if (Xa.ndim() != 2)
      throw py::value_error("X must be 2-D (m, n_features); got shape " + shape_str(Xa));
    if (Xa.shape(1) != shape.n_inputs())
      throw py::value_error("X has shape " + shape_str(Xa) +
                            " but layer_sizes[0] = " + std::to_string(shape.n_inputs()) +
                            " inputs; expected (m, " + std::to_string(shape.n_inputs()) + ")");
    d.X = checked<T>(Xa, "X", {-1, shape.n_inputs()});
    d.n_rows = Xa.shape(0);
  }
  d.m = d.n_rows;
  if (rows) {
    d.rows = checked<std::int64_t>(*rows, "rows", {-1});
    d.m = rows->shape(0);
  }
  if (y) {
    if (y->ndim() == 1) {
      if (!y->dtype().equal(py::dtype::of<std::int64_t>()))
        throw py::value_error(
            "y as a 1-D vector holds class indices and must have dtype int64; got " +
            dtype_str(*y));
      d.labels = checked<std::int64_t>(*y, "y", {d.n_rows});
    } else if (y->ndim() == 2) {
      d.Y = checked<T>(*y, "y", {d.n_rows, shape.n_outputs()});
    } else {
      throw py::value_error(
          "y must be a 1-D vector of class indices or an (m, K) matrix; got shape " +
          shape_str(*y));
    }
  }
  if (sample_weight) d.sample_weight = checked<T>(*sample_weight, "sample_weight", {d.n_rows});
  return d;
}

// Runs f(T{}) for an array's dtype: T = double or float selects the precision.
template <typename F>
auto by_dtype(const py::array& a, const char* name, F&& f) {
  if (a.dtype().equal(py::dtype::of<double>())) return f(double{});
  if (a.dtype().equal(py::dtype::of<float>())) return f(float{});
  throw py::value_error(std::string(name) +
                        " must have dtype float64 or float32 (it selects the precision); got " +
                        dtype_str(a));
}

using OptArray = std::optional<py::array>;

// The preamble every network entry point shares: theta, the shape and the
// examples converted (no copy) and checked against each other, the thread
// count, the workspace of the precision. run(f) then calls f(interrupt hook)
// with the workspace locked and the GIL released.
template <typename T>
struct Call {
  bpnet::Shape shape;
  const T* theta;
  bpnet::Data<T> data;
  int n_threads;
  bpnet::Workspace<T>& ws;

  // out, or a new array of `shape`, checked as a writeable output.
  template <typename U>
  py::array output(OptArray& out, std::vector<py::ssize_t> dims, const char* name = "out") const {
    if (!out) out = py::array_t<U>(dims);
    checked<U>(*out, name, dims, true);
    return *out;
  }
  template <typename F>
  auto run(F&& f) {
    auto guard = lock(ws);
    return without_gil(std::forward<F>(f));
  }
};

template <typename Body>
py::object network_call(const py::array& theta, const std::vector<Index>& layer_sizes,
                        const py::object& X, const OptArray& y, const OptArray& sample_weight,
                        const OptArray& rows, int n_threads, CoreWorkspace& workspace,
                        Body&& body) {
  return by_dtype(theta, "theta", [&](auto t) -> py::object {
    using T = decltype(t);
    bpnet::Shape shape(layer_sizes);
    const T* th = checked<T>(theta, "theta", {shape.n_params()});
    bpnet::Data<T> d = make_data<T>(shape, X, y, sample_weight, rows);
    bpnet::check_threads(n_threads);
    Call<T> call{std::move(shape), th, d, n_threads, workspace.get<T>()};
    return body(call);
  });
}

template <typename T>
T* data_of(py::array& a) {  // an output array checked by Call::output
  return static_cast<T*>(a.mutable_data());
}

// reduce_tree: nodes [(level, index, grad (P,), loss, weight), ...] in leaf
// order, merged in place by bpnet::reduce_tree (which checks them); returns
// the nodes left.
template <typename T>
py::list reduce_tree_typed(const py::list& nodes, Index n_leaves) {
  std::vector<bpnet::NodeSums<T>> sums;
  std::vector<py::array> arrays;
  Index P = -1;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const std::string name = "nodes[" + std::to_string(i) + "]";
    const py::tuple t = py::cast<py::tuple>(nodes[i]);
    if (t.size() != 5)
      throw py::value_error(name + " must be (level, index, grad, loss, weight); got " +
                            std::to_string(t.size()) + " items");
    py::array g = py::cast<py::array>(t[2]);
    if (P < 0) P = g.ndim() == 1 ? g.shape(0) : -1;
    T* gp = checked<T>(g, (name + " grad").c_str(), {P}, true);
    arrays.push_back(g);
    sums.push_back({bpnet::TreeNode{t[0].cast<int>(), t[1].cast<Index>()}, gp, t[3].cast<double>(),
                    t[4].cast<double>()});
  }
  std::vector<std::size_t> left;
  {
    py::gil_scoped_release release;
    left = bpnet::reduce_tree(sums, P, n_leaves);
  }
  py::list out;
  for (std::size_t i : left)
    out.append(py::make_tuple(sums[i].node.level, sums[i].node.index, arrays[i], sums[i].loss,
                              sums[i].weight));
  return out;
}

py::list reduce_tree(const py::list& nodes, Index n_leaves) {
  if (nodes.size() == 0) {
    bpnet::check_nodes(std::vector<bpnet::NodeSums<double>>{}, n_leaves);
    return py::list();
  }
  const py::tuple t0 = py::cast<py::tuple>(nodes[0]);
  if (t0.size() != 5) throw py::value_error("nodes[0] must be (level, index, grad, loss, weight)");
  return by_dtype(py::cast<py::array>(t0[2]), "nodes[0] grad",
                  [&](auto t) { return reduce_tree_typed<decltype(t)>(nodes, n_leaves); });
}

bool cpu_supports(const std::string& feature) {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (feature == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (feature == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
#endif
  return feature == "baseline";
}

// ---------------------------------------------------------------------------
// The network entry points: each converts its outputs, then runs the core.
// ---------------------------------------------------------------------------
template <typename C>
using ScalarOf = std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<C&>().theta)>>;

py::object cost_grad(const py::array& theta, const std::vector<Index>& layer_sizes,
                     const py::object& X, const py::array& y, double lam,
                     const std::string& activation, const std::string& output,
                     const OptArray& sample_weight, OptArray grad, const OptArray& rows,
                     int n_threads, CoreWorkspace& workspace) {
  return network_call(theta, layer_sizes, X, y, sample_weight, rows, n_threads, workspace,
                      [&](auto& c) -> py::object {
                        using T = ScalarOf<decltype(c)>;
                        const auto act = bpnet::parse_activation(activation);
                        const auto unit = bpnet::parse_output(output);
                        py::array g = c.template output<T>(grad, {c.shape.n_params()}, "grad");
                        const double J = c.run([&](const bpnet::Interrupt* stop) {
                          return bpnet::cost_grad(c.shape, c.theta, c.data, lam, act, unit,
                                                  data_of<T>(g), c.n_threads, c.ws, stop);
                        });
                        return py::make_tuple(J, g);
                      });
}

py::object forward(const py::array& theta, const std::vector<Index>& layer_sizes,
                   const py::object& X, const std::string& activation, const std::string& output,
                   OptArray h, const OptArray& rows, int n_threads, CoreWorkspace& workspace) {
  return network_call(theta, layer_sizes, X, std::nullopt, std::nullopt, rows, n_threads, workspace,
                      [&](auto& c) -> py::object {
                        using T = ScalarOf<decltype(c)>;
                        const auto act = bpnet::parse_activation(activation);
                        const auto unit = bpnet::parse_output(output);
                        py::array out = c.template output<T>(h, {c.data.m, c.shape.n_outputs()});
                        c.run([&](const bpnet::Interrupt* stop) {
                          bpnet::forward(c.shape, c.theta, c.data, act, unit, data_of<T>(out),
                                         c.n_threads, c.ws, stop);
                          return 0;
                        });
                        return out;
                      });
}

py::object forward_cost(const py::array& theta, const std::vector<Index>& layer_sizes,
                        const py::object& X, const py::array& y, double lam,
                        const std::string& activation, const std::string& output,
                        const OptArray& sample_weight, OptArray h, const OptArray& rows,
                        int n_threads, CoreWorkspace& workspace) {
  return network_call(theta, layer_sizes, X, y, sample_weight, rows, n_threads, workspace,
                      [&](auto& c) -> py::object {
                        using T = ScalarOf<decltype(c)>;
                        const auto act = bpnet::parse_activation(activation);
                        const auto unit = bpnet::parse_output(output);
                        py::array out = c.template output<T>(h, {c.data.m, c.shape.n_outputs()});
                        const double J = c.run([&](const bpnet::Interrupt* stop) {
                          return bpnet::forward_cost(c.shape, c.theta, c.data, act, unit, lam,
                                                     data_of<T>(out), c.n_threads, c.ws, stop);
                        });
                        return py::make_tuple(J, out);
                      });
}

py::object predict(const py::array& theta, const std::vector<Index>& layer_sizes,
                   const py::object& X, const std::string& activation, OptArray labels,
                   const OptArray& rows, int n_threads, CoreWorkspace& workspace) {
  return network_call(theta, layer_sizes, X, std::nullopt, std::nullopt, rows, n_threads, workspace,
                      [&](auto& c) -> py::object {
                        const auto act = bpnet::parse_activation(activation);
                        py::array out = c.template output<std::int64_t>(labels, {c.data.m});
                        c.run([&](const bpnet::Interrupt* stop) {
                          bpnet::predict(c.shape, c.theta, c.data, act, data_of<std::int64_t>(out),
                                         c.n_threads, c.ws, stop);
                          return 0;
                        });
                        return out;
                      });
}

py::object partial_sums(const py::array& theta, const std::vector<Index>& layer_sizes,
                        const py::object& X, const py::array& y, const std::string& activation,
                        const std::string& output, const OptArray& sample_weight,
                        const py::array& starts, const py::array& leaf_grads, int n_threads,
                        CoreWorkspace& workspace) {
  return network_call(theta, layer_sizes, X, y, sample_weight, std::nullopt, n_threads, workspace,
                      [&](auto& c) -> py::object {
                        using T = ScalarOf<decltype(c)>;
                        const auto act = bpnet::parse_activation(activation);
                        const auto unit = bpnet::parse_output(output);
                        const auto* s = checked<std::int64_t>(starts, "starts", {-1});
                        const std::vector<Index> st(s, s + starts.shape(0));
                        bpnet::check_starts(st, c.data.m);  // before C sizes leaf_grads
                        const Index C = static_cast<Index>(st.size()) - 1, P = c.shape.n_params();
                        T* g = checked<T>(leaf_grads, "leaf_grads", {C, P}, true);
                        std::vector<T*> ptrs(C);
                        for (Index k = 0; k < C; ++k) ptrs[k] = g + k * P;
                        py::array_t<double> loss(C), weight(C);
                        double* lp = loss.mutable_data();
                        double* wp = weight.mutable_data();
                        c.run([&](const bpnet::Interrupt* stop) {
                          bpnet::partial_sums(c.shape, c.theta, c.data, act, unit, st, ptrs, lp, wp,
                                              c.n_threads, c.ws, stop);
                          return 0;
                        });
                        return py::make_tuple(loss, weight);
                      });
}

py::object finalize(const py::array& theta, const std::vector<Index>& layer_sizes, double lam,
                    double loss, double weight_sum, const py::array& grad) {
  return by_dtype(theta, "theta", [&](auto t) -> py::object {
    using T = decltype(t);
    const bpnet::Shape shape(layer_sizes);
    const T* th = checked<T>(theta, "theta", {shape.n_params()});
    T* g = checked<T>(grad, "grad", {shape.n_params()}, true);
    return py::float_(bpnet::finalize(shape, th, lam, loss, weight_sum, g));
  });
}

py::object adam_update(const py::array& theta, const py::array& m1, const py::array& v,
                       const py::array& grad, double beta_1, double beta_2, double step_size,
                       double epsilon, int n_threads) {
  return by_dtype(theta, "theta", [&](auto t) -> py::object {
    using T = decltype(t);
    const py::ssize_t P = theta.ndim() == 1 ? theta.shape(0) : -1;
    T* th = checked<T>(theta, "theta", {P}, true);
    T* mp = checked<T>(m1, "m1", {P}, true);
    T* vp = checked<T>(v, "v", {P}, true);
    const T* g = checked<T>(grad, "grad", {P});
    bpnet::check_threads(n_threads);
    bool finite;
    {
      py::gil_scoped_release release;
      finite = bpnet::adam_update(th, mp, vp, g, P, beta_1, beta_2, step_size, epsilon, n_threads);
    }
    return py::bool_(finite);
  });
}

py::object sgd_update(const py::array& theta, const py::array& velocity, const py::array& grad,
                      double learning_rate, double momentum, bool nesterov, int n_threads) {
  return by_dtype(theta, "theta", [&](auto t) -> py::object {
    using T = decltype(t);
    const py::ssize_t P = theta.ndim() == 1 ? theta.shape(0) : -1;
    T* th = checked<T>(theta, "theta", {P}, true);
    T* vp = checked<T>(velocity, "velocity", {P}, true);
    const T* g = checked<T>(grad, "grad", {P});
    bpnet::check_threads(n_threads);
    bool finite;
    {
      py::gil_scoped_release release;
      finite = bpnet::sgd_update(th, vp, g, P, learning_rate, momentum, nesterov, n_threads);
    }
    return py::bool_(finite);
  });
}

py::object scan_finite(const py::array& x, int n_threads) {
  return by_dtype(x, "x", [&](auto t) -> py::object {
    using T = decltype(t);
    const T* p = checked<T>(x, "x", {-1});
    bpnet::check_threads(n_threads);
    bool finite;
    {
      py::gil_scoped_release release;
      finite = bpnet::scan_finite(p, x.shape(0), n_threads);
    }
    return py::bool_(finite);
  });
}

py::array_t<std::int64_t> leaf_starts(Index m) {
  if (m < 1) throw py::value_error("m must be >= 1; got " + std::to_string(m));
  const auto s = bpnet::leaf_starts(m);
  py::array_t<std::int64_t> out(static_cast<py::ssize_t>(s.size()));
  std::copy(s.begin(), s.end(), out.mutable_data());
  return out;
}

// ---------------------------------------------------------------------------
// The module's definitions, in three groups.
// ---------------------------------------------------------------------------
void bind_network(py::module_& m) {
  m.def("cost_grad", &cost_grad, py::arg("theta"), py::arg("layer_sizes"), py::arg("X"),
        py::arg("y"), py::arg("lam"), py::arg("activation"), py::arg("output"),
        py::arg("sample_weight"), py::arg("grad"), py::arg("rows"), py::arg("n_threads"),
        py::arg("workspace"),
        "(J, grad): regularized cost and its gradient; grad (P,) is overwritten. X is an "
        "(m, s_0) array or a CSR matrix's (data, indices, indptr, shape).");
  m.def("forward", &forward, py::arg("theta"), py::arg("layer_sizes"), py::arg("X"),
        py::arg("activation"), py::arg("output"), py::arg("out"), py::arg("rows"),
        py::arg("n_threads"), py::arg("workspace"), "a^(L) (m, K); out is overwritten.");
  m.def("forward_cost", &forward_cost, py::arg("theta"), py::arg("layer_sizes"), py::arg("X"),
        py::arg("y"), py::arg("lam"), py::arg("activation"), py::arg("output"),
        py::arg("sample_weight"), py::arg("out"), py::arg("rows"), py::arg("n_threads"),
        py::arg("workspace"),
        "(J, h): the regularized cost and a^(L) (m, K) from one forward pass (no gradient); "
        "out is overwritten. X is an (m, s_0) array or a CSR matrix's (data, indices, indptr, "
        "shape).");
  m.def("predict", &predict, py::arg("theta"), py::arg("layer_sizes"), py::arg("X"),
        py::arg("activation"), py::arg("out"), py::arg("rows"), py::arg("n_threads"),
        py::arg("workspace"), "argmax_k z^(L) (m,) int64; out is overwritten.");
  m.def("partial_sums", &partial_sums, py::arg("theta"), py::arg("layer_sizes"), py::arg("X"),
        py::arg("y"), py::arg("activation"), py::arg("output"), py::arg("sample_weight"),
        py::arg("starts"), py::arg("leaf_grads"), py::arg("n_threads"), py::arg("workspace"),
        "Per-leaf sums: leaf_grads (C, P) overwritten; returns (loss (C,), weight (C,)). "
        "starts (C + 1,) are a run of leaf_starts(m_total) shifted to 0; merge with "
        "reduce_tree.");
}

void bind_tree_and_steps(py::module_& m) {
  m.def(
      "n_params", [](const std::vector<Index>& s) { return bpnet::Shape(s).n_params(); },
      py::arg("layer_sizes"), "P = sum_l s_{l+1} (s_l + 1).");
  m.def("leaf_starts", &leaf_starts, py::arg("m"),
        "Fixed leaf boundaries (C + 1,) for m examples (they depend on m only).");
  m.def("reduce_tree", &reduce_tree, py::arg("nodes"), py::arg("n_leaves"),
        "Merges tree nodes [(level, index, grad (P,), loss, weight), ...] (in leaf order) by "
        "the core's fixed tree, in place; returns the nodes left, the root alone when they "
        "cover all n_leaves leaves. A leaf c of partial_sums is node (0, c).");
  m.def("finalize", &finalize, py::arg("theta"), py::arg("layer_sizes"), py::arg("lam"),
        py::arg("loss"), py::arg("weight_sum"), py::arg("grad"),
        "Summed Delta -> gradient in place (divide by weight_sum, the summed sample weight; add "
        "lam/weight_sum Theta); returns J.");
  m.def("adam_update", &adam_update, py::arg("theta"), py::arg("m1"), py::arg("v"), py::arg("grad"),
        py::arg("beta_1"), py::arg("beta_2"), py::arg("step_size"), py::arg("epsilon"),
        py::arg("n_threads") = -1,
        "One Adam step in place (theta, m1, v (P,) overwritten): m1 = b1 m1 + (1-b1) g; "
        "v = b2 v + (1-b2) g^2; theta -= step_size m1 / (sqrt(v) + epsilon). Returns whether "
        "every updated theta is finite.");
  m.def("scan_finite", &scan_finite, py::arg("x"), py::arg("n_threads") = -1,
        "Whether every value of x (n,), float64 or float32, is finite (no NaN or inf).");
  m.def("sgd_update", &sgd_update, py::arg("theta"), py::arg("velocity"), py::arg("grad"),
        py::arg("learning_rate"), py::arg("momentum"), py::arg("nesterov"),
        py::arg("n_threads") = -1,
        "One SGD step with momentum in place (theta, velocity (P,) overwritten): v = mu v - lr g; "
        "theta += mu v - lr g (nesterov) or theta += v. Returns whether every updated theta is "
        "finite.");
}

void bind_build(py::module_& m) {
  m.def(
      "max_threads", [] { return bpnet::resolve_threads(-1); },
      "Threads a call with n_threads=-1 uses (OpenMP's limit: OMP_NUM_THREADS, threadpoolctl).");
  m.def("usable_cpus", &bpnet::usable_cpus,
        "CPUs this process may run on (its affinity mask): the core never uses more threads.");
  m.def("cpu_supports", &cpu_supports, py::arg("feature"),
        "Whether this CPU (and OS) can run the 'baseline', 'avx2' or 'avx512' build.");
  py::dict info;
  info["isa"] = BPNET_ISA;
  info["simd"] = std::string(Eigen::SimdInstructionSetsInUse());
  info["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                  "." + std::to_string(EIGEN_MINOR_VERSION);
  if (bpnet::openmp_version())
    info["openmp"] = bpnet::openmp_version();
  else
    info["openmp"] = py::none();
#if defined(__clang__)
  info["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = "gcc " __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
  m.attr("build_info") = info;
  m.attr("max_threads_limit") = bpnet::kMaxThreads;
}

}  // namespace

PYBIND11_MODULE(BPNET_MODULE_NAME, m) {
  m.doc() = "bpnet's compiled core (private): use the functions in the bpnet package.";
  py::class_<CoreWorkspace>(m, "Workspace",
                            "Reusable buffers for the core; one call at a time may use one.")
      .def(py::init<>())
      .def_property_readonly("nbytes",
                             [](const CoreWorkspace& w) { return w.f64.bytes() + w.f32.bytes(); });
  bind_network(m);
  bind_tree_and_steps(m);
  bind_build(m);
  SignalCheck::main_thread_ident() =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
}
