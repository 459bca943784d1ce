"""Saving and loading fitted region maps (:class:`~mri_lens.lenses.mri.regions.RegionMaps`): one versioned data
directory (safetensors arrays + JSON manifest, written atomically by :mod:`mri_lens.storage`), validated on load
(format, checksums, parameters, array shapes). ``RegionMaps.save`` / ``RegionMaps.load`` call these.

Schema 3 adds the reducers: PCA/SVD maps also hold ``components`` and ``explained_variance_ratio``, and maps
without a grid (``n_components != 2``) hold no grid arrays. Schema 2 and 1 files (UMAP, 2 components, always a
grid) still load: their parameters lack the reducer's, whose defaults are what they were fitted with.
"""

from __future__ import annotations

import numpy as np

from ...errors import ScanFileError
from ...storage.write import load_dir, save_dir

__all__ = ["MAPS_FORMAT", "MAPS_SCHEMA", "load_maps", "save_maps"]

MAPS_FORMAT = "mri_lens.region_maps"
MAPS_SCHEMA = 3  # 2: versioned data directory; 3: reducers, N-D maps (schemas 1 and 2 still load)

_GRID = ("cell", "x_edges", "y_edges", "region_act", "thresholds", "activated")


def save_maps(maps, path, *, overwrite: bool = False) -> str:
    """Write fitted ``maps`` to directory ``path`` atomically (see :meth:`RegionMaps.save`). Returns the absolute
    path."""
    maps._check_fitted()
    arrays = {"coords": maps.coords_}
    if maps.has_grid:
        arrays.update({"cell": maps.cell_, "x_edges": maps.x_edges_, "y_edges": maps.y_edges_,
                       "region_act": maps.region_act_, "activated": maps.activated_.astype(np.uint8),
                       "thresholds": np.where(np.isfinite(maps.thresholds_), maps.thresholds_, np.nan)})
    if maps.components_ is not None:
        arrays["components"] = maps.components_
        arrays["explained_variance_ratio"] = maps.explained_variance_ratio_
    if maps.labels_ is not None:
        arrays["labels"] = maps.labels_
    if maps.neuron_category_means_ is not None:
        arrays["neuron_category_means"] = maps.neuron_category_means_
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in maps.get_params().items()}  # JSON types
    meta = {"params": params, "layers": maps.layers_, "label_names": maps.label_names_, "n_docs": maps.n_docs_,
            "d_mlp": maps.d_mlp_, "scan": maps.scan_meta_}
    return save_dir(path, fmt=MAPS_FORMAT, schema=MAPS_SCHEMA, arrays=arrays, meta=meta, overwrite=overwrite)


def _check_meta(meta: dict) -> None:
    """The manifest's layers, label names and sizes are what :func:`save_maps` writes (``ValueError`` naming the
    first that is not)."""
    layers, names = meta["layers"], meta["label_names"]
    if not isinstance(layers, list) or not all(isinstance(l, int) and not isinstance(l, bool) and l >= 0
                                               for l in layers) or len(set(layers)) != len(layers):
        raise ValueError("layers")
    if names is not None and (not isinstance(names, list) or not all(isinstance(x, str) for x in names)):
        raise ValueError("label_names")
    for key in ("n_docs", "d_mlp"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0:
            raise ValueError(key)


def _reducer_shapes_agree(self) -> bool:
    """The coordinates, and the components of a PCA/SVD fit, have the shapes the parameters and sizes imply."""
    L, k = len(self.layers_), self.n_components
    n_pts, n_feat = (self.d_mlp_, self.n_docs_) if self.mode == "neurons" else (self.n_docs_, self.d_mlp_)
    if self.reducer == "umap":
        linear_ok = self.components_ is None and self.explained_variance_ratio_ is None
    else:
        linear_ok = (self.components_ is not None and self.components_.shape == (L, k, n_feat)
                     and self.explained_variance_ratio_ is not None and self.explained_variance_ratio_.shape == (L, k))
    return self.coords_.shape == (L, n_pts, k) and linear_ok


def _shapes_agree(self, t: np.ndarray) -> bool:
    """Every loaded grid array of ``self`` has the shape its parameters and sizes imply (``t``: the saved
    thresholds)."""
    L, g2 = len(self.layers_), self.grid * self.grid
    n_pts = self.d_mlp_ if self.mode == "neurons" else self.n_docs_
    return (self.cell_.shape == (L, n_pts)
            and self.cell_.dtype.kind in "iu" and int(self.cell_.min(initial=0)) >= 0
            and self.region_act_.shape == (L, self.n_docs_, g2)
            and self.activated_.shape == (L, self.n_docs_, g2)
            and self.x_edges_.shape == (L, self.grid + 1) and self.y_edges_.shape == (L, self.grid + 1)
            and t.shape[:1] == (L,) and int(self.cell_.max(initial=0)) < g2)


def _labels_agree(self, names: list[str] | None) -> bool:
    return self.labels_ is None or (len(self.labels_) == self.n_docs_ and names is not None
                                    and (not self.labels_.size or (self.labels_.min() >= 0 and
                                                                   self.labels_.max() < len(names))))


def _read_grid(self, arrays: dict) -> np.ndarray | None:
    """Set the grid arrays of ``self`` from ``arrays`` (None, and none saved, without a grid); returns the saved
    thresholds (NaN: never active) or None."""
    if not self.has_grid:
        if any(k in arrays for k in _GRID):
            raise ValueError("grid arrays saved for maps without a grid")
        self.cell_ = self.x_edges_ = self.y_edges_ = self.region_act_ = self.thresholds_ = self.activated_ = None
        return None
    self.cell_ = arrays["cell"]
    self.x_edges_, self.y_edges_ = arrays["x_edges"], arrays["y_edges"]
    self.region_act_ = arrays["region_act"]
    t = arrays["thresholds"]
    self.thresholds_ = np.where(np.isnan(t), np.inf, t)
    self.activated_ = arrays["activated"].astype(bool)
    return t


def load_maps(cls, path):
    """Read a directory written by :func:`save_maps` into a new ``cls`` (validated: format, checksums, shapes;
    :class:`~mri_lens.errors.ScanFileError` otherwise)."""
    arrays, meta, _ = load_dir(path, fmt=MAPS_FORMAT, schema=MAPS_SCHEMA)
    try:
        params = meta["params"]
        if not isinstance(params, dict) or not set(params) <= set(cls().get_params()):
            raise ValueError("params")
        self = cls(**params)
        self._check_params()
        _check_meta(meta)
        names = meta["label_names"]
        self.layers_ = [int(l) for l in meta["layers"]]
        self.label_names_ = names
        self.n_docs_ = int(meta["n_docs"])
        self.d_mlp_ = int(meta["d_mlp"])
        self.scan_meta_ = meta.get("scan", {})
        if not isinstance(self.scan_meta_, dict):
            raise ValueError("scan")
        self.coords_ = arrays["coords"]
        self.components_ = arrays.get("components")
        self.explained_variance_ratio_ = arrays.get("explained_variance_ratio")
        t = _read_grid(self, arrays)
        self.labels_ = arrays.get("labels")
        if self.labels_ is not None:
            self.labels_ = self.labels_.astype(np.int64)
        self.neuron_category_means_ = arrays.get("neuron_category_means")
        ok = (_reducer_shapes_agree(self) and _labels_agree(self, names)
              and (t is None or _shapes_agree(self, t)))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ScanFileError(f"{path} is not consistent saved region maps: {type(e).__name__} {e}") from None
    if not ok:
        raise ScanFileError(f"{path} is not consistent saved region maps: array shapes disagree")
    return self
