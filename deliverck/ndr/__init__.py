"""Bounce knowledge: the NDR catalog and the prediction of NDRs from findings."""

from deliverck.ndr.catalog import Catalog, CatalogEntry, ReceiverSystem, load, parse_receivers
from deliverck.ndr.predict import predict

__all__ = ["Catalog", "CatalogEntry", "ReceiverSystem", "load", "parse_receivers", "predict"]
