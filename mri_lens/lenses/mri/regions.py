"""MRI region maps: per layer, a 2-D map (UMAP, PCA or SVD) cut into an n x n grid of regions (after the LLM-MRI
paper), or an N-D reduction without a grid.

Two modes, one object (:class:`RegionMaps`):

- ``mode="neurons"`` (default). Each MLP neuron of a layer is a point; its features are its pooled activations on
  every document of the corpus, standardised per neuron (z-scores over documents), so the Euclidean distance
  between two neurons is a monotone function of the correlation of their activation patterns. UMAP places
  co-activating neurons together; the map is cut into ``grid x grid`` regions. A region's activation on a document
  is the mean of its neurons' z-scores; a document *activates* a region when that value passes the rule below.
- ``mode="documents"`` (LLM-MRI's own semantics, done properly). Each document is a point (features: its
  standardised pooled activations of the layer's neurons); one fit per layer shared by all categories; the full
  grid is kept; a document activates exactly the cell it lands in.

The activation rule (``rule``), per layer and region, over documents:

- ``"zscore"`` (default, ``threshold=1.0``): standardise the region's activation over documents; a document
  activates the region when its z-score is >= ``threshold`` (about the top 16 % of documents for a normal
  region, fewer for a skewed one).
- ``"quantile"`` (``threshold=0.9``): a document activates the region when its activation is above the region's
  ``threshold`` quantile (the top 10 % of documents).

Regions with no neurons, or whose activation does not vary over documents, are never activated.

Grids (``binning``): ``"range"`` cuts each axis into equal-width bins over a robust range (the ``clip`` and
``100 - clip`` percentiles; points outside land in the border cells); ``"quantile"`` cuts each axis at its own
quantiles (rows and columns hold about equally many points). Empty cells stay in the grid: region ids are always
``row * grid + col`` with ``0 <= row, col < grid`` (row = y bin, col = x bin).

Alignment (``align``; by default UMAP maps only): each UMAP map is centred and scaled to unit RMS radius; each
layer's map is rotated/reflected (weighted orthogonal Procrustes) onto the previous layer's map, so that a
position, and so a region, means roughly the same thing from one layer to the next. In neurons mode the
correspondences are each neuron's most correlated neuron in the previous layer (weighted by that correlation); in
documents mode the documents themselves.

Reducers (``reducer``, ``n_components``, ``scaling``; fitted in :mod:`.reducers`): ``"umap"`` (default) places
neighbours together, its axes mean nothing; ``"pca"`` and ``"svd"`` give component scores whose axes mean something
(``components_``, ``explained_variance_ratio_``), so they are not aligned by default. Each reducer sees each neuron's
pooled activations over documents z-scored (default), min-max scaled or raw; the region activations and the
alignment's correspondences always use z-scores. With ``n_components == 2`` the map is cut into the grid; with any
other number there is no grid (``has_grid`` is False): the components are read with :meth:`RegionMaps.coordinates`
and joined across layers by ``ml.mri.component_graph(maps)``.

Layers are fitted in parallel across processes (``n_jobs``); umap-learn is single-threaded once a seed is set.
With the same scan and seed every map is identical; a different seed moves points and so region boundaries (see
``bench/RESULTS.md`` for how much the region assignments and enrichment results vary between seeds).

This module holds the estimator (parameters, :meth:`RegionMaps.fit`, the fitted ``*_`` arrays and the accessors
the other lenses read); beside it, each taking the fitted maps: :mod:`.summaries` (category images, tables, the
notebook display), :mod:`.plots` (figures), :mod:`.maps_io` (save, load), :mod:`.probe` (separability).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...data.corpus import check_categories
from ...errors import ScanError
from . import maps_io, plots, summaries
from .geometry import _cells, _grid_edges, _procrustes, standardise
from .reducers import REDUCERS, SCALINGS, check_n_components, correspondence, reduce_layers, scale

__all__ = ["RegionMaps"]


class _hybridmethod:
    """``RegionMaps.fit(scan, grid=10)`` builds and fits in one call; ``RegionMaps(grid=10).fit(scan)`` also works."""

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls):
        if obj is None:
            def build_and_fit(scan, *args, layers=None, progress=True, **params):
                return cls(**params).fit(scan, *args, layers=layers, progress=progress)
            build_and_fit.__doc__ = self.func.__doc__
            return build_and_fit
        return self.func.__get__(obj, cls)


class RegionMaps:
    """Per-layer region maps of a :class:`~mri_lens.results.scan.Scan` (see the module docstring for the method).

    Parameters
    ----------
    grid: n, the map is cut into ``n x n`` regions.
    mode: ``"neurons"`` (points are neurons) or ``"documents"`` (points are documents, LLM-MRI's semantics).
    pooling: which pooled activation of the scan to use (``"mean"``, ``"max"``, ``"first"``...).
    reducer: ``"umap"``, ``"pca"`` or ``"svd"`` (scikit-learn; solvers and sign rule in :mod:`.reducers`).
    n_components: dimensions of each layer's reduction; 2 gives the grid, any other number none.
    scaling: ``"zscore"``, ``"minmax"`` or ``"none"``: each neuron's activations over documents before reduction.
    binning: ``"range"`` (equal width over a robust range) or ``"quantile"``.
    clip: percent of points clipped at each end of an axis for the robust range (``binning="range"``).
    align: rotate each layer's map onto the previous one (weighted orthogonal Procrustes); ``None``: only UMAP maps
        with 2 components. Needs ``n_components == 2``. Aligned PCA/SVD coordinates are rotated component scores
        (``components_`` and ``explained_variance_ratio_`` stay those of the unrotated components).
    rule: ``"zscore"`` or ``"quantile"``: when a document activates a region (neurons mode).
    threshold: z-score (default 1.0) or quantile (default 0.9) of the rule.
    n_neighbors, min_dist, n_epochs: UMAP's parameters. Distances are Euclidean on z-scored features, which
        orders pairs of neurons exactly as their correlation over documents does; neighbours are exact.
        ``n_epochs=200`` is umap-learn's own choice for large datasets; its 500 for small ones (``None``) made the
        maps slower and changed the regions found enriched no more than a different seed does (bench/RESULTS.md).
    seed: the reducer's ``random_state``; the same seed and scan give identical maps.
    n_jobs: worker processes for the per-layer fits (-1: one per core, at most one per layer; 1: sequential).

    Attributes (after :meth:`fit`)
    ------------------------------
    layers_: model layer numbers mapped ``[n_layers]``.
    coords_: map coordinates of every point, float32 ``[n_layers, n_points, n_components]`` (UMAP: centred, unit RMS
        radius; PCA/SVD: the component scores; rotated when aligned).
    components_: PCA/SVD loadings, float32 ``[n_layers, n_components, n_features]`` (n_features: documents in
        neurons mode, neurons in documents mode); None for UMAP.
    explained_variance_ratio_: float32 ``[n_layers, n_components]`` (PCA/SVD; None for UMAP).
    The grid arrays below are None when ``n_components != 2``.
    cell_: region id of every point ``[n_layers, n_points]``.
    x_edges_, y_edges_: grid edges ``[n_layers, grid + 1]``.
    region_act_: region activation per document ``[n_layers, n_docs, n_regions]`` (neurons mode: mean z-score of
        the region's neurons; documents mode: 1 for the document's own cell).
    thresholds_: activation threshold of each region in ``region_act_`` units ``[n_layers, n_regions]`` (inf where
        a region can never activate).
    activated_: which documents activate which regions ``[n_layers, n_docs, n_regions]`` (bool).
    neuron_category_means_: mean z-score of each neuron per category ``[n_layers, n_categories, d_mlp]``
        (neurons mode, labelled scans; used for selectivity colours).
    labels_, label_names_: the scan's labels ``[n_docs]`` and their names (or None).
    has_grid, aligned: whether the maps are cut into regions (2 components) and aligned (``align`` resolved).
    """

    def __init__(self, grid: int = 10, *, mode: str = "neurons", pooling: str = "mean", reducer: str = "umap",
                 n_components: int = 2, scaling: str = "zscore", binning: str = "range", clip: float = 1.0,
                 align: bool | None = None, rule: str = "zscore", threshold: float | None = None,
                 n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int | None = 200, seed: int = 0,
                 n_jobs: int = -1):
        self.grid = grid
        self.mode = mode
        self.pooling = pooling
        self.reducer = reducer
        self.n_components = n_components
        self.scaling = scaling
        self.binning = binning
        self.clip = clip
        self.align = align
        self.rule = rule
        self.threshold = threshold
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.seed = seed
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (read off its signature, as scikit-learn does)."""
        import inspect

        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {k: getattr(self, k) for k in names}

    def _check_params(self) -> None:
        if not isinstance(self.grid, (int, np.integer)) or not 1 <= self.grid <= 100:
            raise ValueError(f"grid must be an integer in 1..100, got {self.grid!r}")
        if self.mode not in ("neurons", "documents"):
            raise ValueError(f"mode must be 'neurons' or 'documents', got {self.mode!r}")
        if self.binning not in ("range", "quantile"):
            raise ValueError(f"binning must be 'range' or 'quantile', got {self.binning!r}")
        if not 0 <= self.clip < 50:
            raise ValueError(f"clip must be a percentage in [0, 50), got {self.clip!r}")
        if self.rule not in ("zscore", "quantile"):
            raise ValueError(f"rule must be 'zscore' or 'quantile', got {self.rule!r}")
        if self.rule == "quantile" and self.threshold is not None and not 0 < self.threshold < 1:
            raise ValueError(f"a quantile threshold must be in (0, 1), got {self.threshold!r}")
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors must be >= 2, got {self.n_neighbors!r}")
        if self.reducer not in REDUCERS:
            raise ValueError(f"reducer must be one of {', '.join(map(repr, REDUCERS))}, got {self.reducer!r}")
        k = self.n_components
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_components must be an integer >= 1, got {k!r}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {', '.join(map(repr, SCALINGS))}, got {self.scaling!r}")
        if self.align not in (None, True, False) or (self.align and k != 2):
            raise ValueError(f"align must be None, True or False, and True only with n_components=2; got "
                             f"align={self.align!r} with n_components={k!r}")

    @property
    def has_grid(self) -> bool:
        """Whether the maps are cut into a grid of regions (``n_components == 2``)."""
        return self.n_components == 2

    @property
    def aligned(self) -> bool:
        """Whether each layer's map is aligned onto the previous one: ``align`` resolved (``None``: UMAP maps with
        2 components only)."""
        if self.align is None:
            return self.reducer == "umap" and self.n_components == 2
        return bool(self.align)

    @property
    def threshold_(self) -> float:
        if self.threshold is not None:
            return float(self.threshold)
        return 1.0 if self.rule == "zscore" else 0.9

    # ------------------------------------------------------------------ fit
    @_hybridmethod
    def fit(self, scan, layers: Sequence[int] | None = None, *, progress: bool = True) -> "RegionMaps":
        """Fit the maps of ``scan`` (every scanned layer, or the model layer numbers ``layers``). Returns self.
        ``progress``: a progress bar over the layers (``tqdm.auto``: a widget in a notebook, text elsewhere).

        Call it on the class with the parameters as keywords (``RegionMaps.fit(scan, grid=10, seed=0)``) or on an
        instance (``RegionMaps(grid=10).fit(scan)``).
        """
        self._check_params()
        layers = list(scan.layers) if layers is None else [int(l) for l in layers]
        if not layers:
            raise ValueError("no layers to map")
        for l in layers:
            scan.layer_index(l)  # every layer was scanned (ScanError naming the scanned ones), before any reading
        n_docs, d = scan.n_docs, scan.d_mlp
        n_points = d if self.mode == "neurons" else n_docs
        if n_docs < 4:
            raise ScanError(f"region maps need at least 4 documents, the scan has {n_docs}")
        if n_points < 4:
            raise ScanError(f"region maps need at least 4 points per layer, got {n_points}")
        check_n_components(self.n_components, self.reducer, n_points, n_docs if self.mode == "neurons" else d)

        def read(l: int) -> np.ndarray:  # one layer's pooled activations, read from the scan [n_docs, d_mlp]
            x = scan.pooled(self.pooling, layer=l)
            if not np.isfinite(x).all():
                raise ScanError("the scan's pooled activations contain NaN or inf")
            return x

        self.layers_ = layers
        self.labels_ = None if scan.labels is None else np.asarray(scan.labels, dtype=np.int64)
        self.label_names_ = None if scan.label_names is None else list(scan.label_names)
        self.n_docs_ = n_docs
        self.d_mlp_ = d
        self.scan_meta_ = {k: scan.meta.get(k) for k in ("model_id", "architecture", "hook_template", "prepend_bos")}

        # Layers are read one at a time, twice (to reduce, then to align and activate), so memory holds a few
        # layers' features, never all of them: a scan larger than memory maps as well as a small one.
        features = (scale(read(l), self.scaling) for l in layers)
        coords, comps, evr = reduce_layers(
            (f.T if self.mode == "neurons" else f for f in features), reducer=self.reducer,
            n_components=self.n_components, seed=self.seed, umap_args=(self.n_neighbors, self.min_dist, self.n_epochs),
            n_jobs=self.n_jobs, progress=progress, n_layers=len(layers))
        self.components_ = None if comps is None else np.stack(comps)
        self.explained_variance_ratio_ = None if evr is None else np.stack(evr)
        self._place(coords, (standardise(read(l)) for l in layers), n_points)
        return self

    def _alloc_grid(self, n_points: int) -> None:
        """The grid arrays, zeroed (None without a grid)."""
        g, R, L, n_docs = self.grid, self.grid * self.grid, len(self.layers_), self.n_docs_
        if not self.has_grid:
            self.cell_ = self.x_edges_ = self.y_edges_ = self.region_act_ = self.thresholds_ = self.activated_ = None
            return
        self.cell_ = np.zeros((L, n_points), np.int32)
        self.x_edges_ = np.zeros((L, g + 1))
        self.y_edges_ = np.zeros((L, g + 1))
        self.region_act_ = np.zeros((L, n_docs, R), np.float32)
        self.thresholds_ = np.full((L, R), np.inf)
        self.activated_ = np.zeros((L, n_docs, R), bool)

    def _place(self, coords: list[np.ndarray], zs, n_points: int) -> None:
        """Align each layer's map ``coords[i]`` ``[n_points, n_components]`` onto the previous one, cut it into the
        grid and activate its regions (with a grid); ``zs`` yields each layer's z-scores ``[n_docs, d_mlp]`` in
        order, read only when needed. Sets every fitted array but the reducer's."""
        g, L, d = self.grid, len(self.layers_), self.d_mlp_
        self._alloc_grid(n_points)
        with_means = self.mode == "neurons" and self.labels_ is not None
        k = len(self.label_names_) if with_means else 0
        means = np.zeros((L, k, d), np.float32) if with_means else None
        z_prev = None
        for i in range(L):
            z = next(zs) if self.has_grid or with_means else None
            if self.aligned and i > 0:
                src, w = self._correspondence(z, z_prev)
                coords[i] = coords[i] @ _procrustes(coords[i], coords[i - 1][src], w)
            if self.has_grid:
                c = coords[i].astype(np.float32)
                xe, ye = _grid_edges(c, g, self.binning, self.clip)
                self.x_edges_[i], self.y_edges_[i] = xe, ye
                self.cell_[i] = _cells(c, xe, ye, g)
                self._activate(i, z)
            for cat in range(k):
                sel = self.labels_ == cat
                if sel.any():
                    means[i, cat] = z[sel].mean(0)
            z_prev = z
        self.coords_ = np.stack(coords).astype(np.float32)
        self.neuron_category_means_ = means

    def _correspondence(self, z_cur: np.ndarray, z_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The alignment's matching points and weights (:func:`.reducers.correspondence`)."""
        return correspondence(z_cur, z_prev, self.mode)

    def _activate(self, i: int, z: np.ndarray) -> None:
        """Region activations, thresholds and the activated matrix of layer position ``i``."""
        g2 = self.grid * self.grid
        cells = self.cell_[i]
        if self.mode == "documents":
            self.region_act_[i] = 0
            self.region_act_[i, np.arange(self.n_docs_), cells] = 1
            self.activated_[i] = self.region_act_[i] > 0
            self.thresholds_[i] = 1.0
            return
        counts = np.bincount(cells, minlength=g2)
        member = np.zeros((z.shape[1], g2), np.float32)
        member[np.arange(z.shape[1]), cells] = 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            member /= np.where(counts > 0, counts, 1)[None, :]
        ra = z @ member  # [n_docs, n_regions]: mean z-score of each region's neurons
        self.region_act_[i] = ra
        sd = ra.std(0)
        live = (counts > 0) & (sd > 1e-6)
        if self.rule == "zscore":
            thr = ra.mean(0) + self.threshold_ * sd
            act = ra >= thr[None, :]
        else:
            thr = np.quantile(ra, self.threshold_, axis=0)
            act = ra > thr[None, :]
        self.thresholds_[i] = np.where(live, thr, np.inf)
        self.activated_[i] = act & live[None, :]

    # ------------------------------------------------------------------ the interface lenses consume
    def _check_fitted(self) -> None:
        if not hasattr(self, "coords_"):
            raise ValueError("this RegionMaps is not fitted yet: call fit(scan) first")

    @property
    def layers(self) -> list[int]:
        self._check_fitted()
        return list(self.layers_)

    @property
    def n_regions(self) -> int:
        return self.grid * self.grid

    @property
    def n_docs(self) -> int:
        self._check_fitted()
        return self.n_docs_

    @property
    def labels(self) -> np.ndarray | None:
        return self.labels_

    @property
    def label_names(self) -> list[str] | None:
        return self.label_names_

    def layer_index(self, layer: int) -> int:
        self._check_fitted()
        try:
            return self.layers_.index(int(layer))
        except ValueError:
            raise ScanError(f"layer {layer} was not mapped; these maps have layers {self.layers_}") from None

    def coordinates(self, layer: int) -> np.ndarray:
        """Every point's coordinates in model layer ``layer``'s reduction: float32 ``[n_points, n_components]``."""
        return self.coords_[self.layer_index(layer)]

    def _grid_layer(self, layer: int) -> int:
        """The position of model layer ``layer`` among the mapped ones, for an accessor that needs the grid."""
        li = self.layer_index(layer)
        if not self.has_grid:
            raise ValueError(f"these maps have {self.n_components} components, not 2, so no grid of regions: join "
                             "their components across layers with ml.mri.component_graph(maps); read them with "
                             "maps.coordinates(layer), draw them with maps.component_figure()")
        return li

    def activated(self, layer: int) -> np.ndarray:
        """Which documents activate which regions of model layer ``layer``: bool ``[n_docs, n_regions]``."""
        li = self._grid_layer(layer)
        return self.activated_[li]

    def region_activation(self, layer: int) -> np.ndarray:
        """Region activation per document of model layer ``layer``: float32 ``[n_docs, n_regions]``."""
        li = self._grid_layer(layer)
        return self.region_act_[li]

    def region_neurons(self, layer: int, region: int) -> np.ndarray:
        """Neuron ids in ``region`` of model layer ``layer`` (empty in documents mode) ``[n]``."""
        li = self._grid_layer(layer)
        self._check_region(region)
        if self.mode != "neurons":
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.cell_[li] == region)

    def region_documents(self, layer: int, region: int) -> np.ndarray:
        """Documents that activate ``region`` of model layer ``layer``, strongest first ``[n]``."""
        li = self._grid_layer(layer)
        self._check_region(region)
        docs = np.flatnonzero(self.activated_[li, :, region])
        return docs[np.argsort(-self.region_act_[li, docs, region], kind="stable")]

    def _check_region(self, region: int) -> None:
        if not 0 <= int(region) < self.n_regions:
            raise ValueError(f"region must be in 0..{self.n_regions - 1}, got {region}")

    def region_sizes(self, layer: int) -> np.ndarray:
        """Points (neurons or documents) in each region ``[n_regions]``."""
        li = self._grid_layer(layer)
        return np.bincount(self.cell_[li], minlength=self.n_regions)

    def _category_masks(self, categories: Sequence[str] | None) -> list[tuple[str, np.ndarray]]:
        """``(category, documents [n_docs] bool)`` for each of ``categories`` (default: all; "all documents" for
        unlabelled maps), the names checked against the maps' labels."""
        if self.labels_ is None:
            if categories:
                raise ScanError("these maps have no labels: the scan's corpus was unlabelled")
            return [("all documents", np.ones(self.n_docs_, bool))]
        names = self.label_names_
        cats = list(names) if categories is None else list(categories)
        check_categories(cats, names, "the maps")
        return [(c, self.labels_ == names.index(c)) for c in cats]

    # ------------------------------------------------------------------ summaries (computed in summaries.py)
    def category_fractions(self, layer: int, categories: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Fraction of each category's documents activating each region ``{category: [grid, grid]}``
        (NaN for regions with no points)."""
        return summaries.category_fractions(self, layer, categories)

    def category_mean_activation(self, layer: int, categories: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Mean region activation over each category's documents ``{category: [grid, grid]}``."""
        return summaries.category_mean_activation(self, layer, categories)

    def log_odds(self, layer: int, a: str, b: str) -> np.ndarray:
        """Log odds ratio (natural log, 0.5 added to every cell of the 2 x 2 table) that a document of ``a`` rather
        than ``b`` activates each region ``[grid, grid]`` (NaN for regions with no points)."""
        return summaries.log_odds(self, layer, a, b)

    def document_regions(self, layer: int | None = None):
        """Which regions each document activates, as a long pandas DataFrame (doc, label, layer, region, row, col,
        activation); all layers by default."""
        return summaries.document_regions(self, layer)

    def regions(self, layer: int | None = None):
        """One row per (layer, region): position, size, threshold and the fraction of each category's documents
        that activate it (pandas DataFrame)."""
        return summaries.regions_table(self, layer)

    # ------------------------------------------------------------------ figures (plotly; drawn in plots.py)
    def figure(self, layer: int, categories: Sequence[str] | None = None, *, value: str = "fraction"):
        """Region images of one layer: one ``grid x grid`` heatmap per category (``value="fraction"``: fraction of
        the category's documents activating each region; ``"mean"``: mean region activation) plus, with two or
        more categories, the log-odds panel of the first two. Empty regions are blank. Returns a plotly Figure."""
        return plots.region_images(self, layer, categories, value=value)

    def scatter(self, layer: int, a: str | None = None, b: str | None = None):
        """The map's points with the grid. Neurons mode: each neuron coloured by selectivity (mean z-score on
        ``a``'s documents minus on ``b``'s; ``b=None``: minus all other documents), hover with layer, neuron,
        region. Documents mode: each document coloured by category. Returns a plotly Figure."""
        return plots.scatter(self, layer, a, b)

    def small_multiples(self, categories: Sequence[str] | None = None, *, value: str = "log-odds"):
        """All layers side by side. ``value="log-odds"``: log-odds of the first two categories; ``"fraction"``:
        one row per category (fraction of its documents activating each region). Returns a plotly Figure."""
        return plots.small_multiples(self, categories, value=value)

    def component_figure(self, layers: Sequence[int] | None = None):
        """Maps of any number of components (N-D maps' figure): for PCA/SVD, the explained variance ratio of each
        component across layers; for every reducer, each layer's points on components 1 and 2 (documents coloured
        by category). ``layers``: model layer numbers (default all). Returns a plotly Figure."""
        return plots.component_figure(self, layers)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        head = (f"grid={self.grid}, " if self.has_grid else "") + \
            f"mode={self.mode!r}, reducer={self.reducer!r}, n_components={self.n_components}"
        if not hasattr(self, "coords_"):
            return f"RegionMaps({head}, not fitted)"
        rule = f"{self.rule} {self.threshold_:g}" if self.mode == "neurons" else "own cell"
        return (f"RegionMaps({head}, layers={self.layers_}, n_docs={self.n_docs_}, points/layer="
                f"{self.coords_.shape[1]}" + (f", rule={rule}" if self.has_grid else "") + f", seed={self.seed})")

    def _repr_html_(self) -> str:
        return summaries.maps_html(self)

    # ------------------------------------------------------------------ save, load (in maps_io.py)
    def save(self, path, *, overwrite: bool = False) -> str:
        """Write to directory ``path`` atomically (safetensors + JSON manifest). Returns the absolute path.

        Replaces only saved region maps; anything else at ``path`` is refused unless ``overwrite=True`` (which
        never removes files mri_lens did not write). A kill at any instant leaves the old or the new maps.
        """
        return maps_io.save_maps(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path) -> "RegionMaps":
        """Read a directory written by :meth:`save` (validated: format, checksums, shapes)."""
        return maps_io.load_maps(cls, path)
