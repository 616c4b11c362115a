"""GET /site-config: what a page needs from the service so that it states no product fact of its own: the formats
the service reads, its body limit, the title of every error code, and the one model metric to show people."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contract.model_file import METRICS, QUANTIZATION, QUANTIZATION_NONE, TOP1, TOP1_FP32, TOP1_INT8
from serve.error_codes import ErrorCode
from serve.formats import describe_formats
from serve.schemas import Format, HeadlineMetric, SiteConfig
from serve.settings import Settings

if TYPE_CHECKING:
    from serve.model import LoadedModel


def site_config(settings: Settings, model: LoadedModel | None) -> SiteConfig:
    return SiteConfig(
        formats=[Format(**fmt) for fmt in describe_formats()],
        max_body_bytes=settings.max_body_bytes,
        errors={code: code.title for code in ErrorCode},
        headline_metric=headline_metric(model),
    )


def headline_metric(model: LoadedModel | None) -> HeadlineMetric | None:
    """{"name", "value"}: the served file's test top-1, a fraction in (0, 1]; None without one (or without a model
    yet): no number rather than a wrong one."""
    if model is None:
        return None
    described = model.describe()
    metrics = described.get(METRICS)
    if not isinstance(metrics, dict):
        return None
    name = TOP1_FP32 if described.get(QUANTIZATION, QUANTIZATION_NONE) == QUANTIZATION_NONE else TOP1_INT8
    if name not in metrics:
        name = TOP1
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        return None
    return HeadlineMetric(name, value)
