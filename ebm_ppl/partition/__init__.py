"""Partition functions: exact enumeration, quadrature, AIS, variational bounds."""

from ebm_ppl.partition.base import LogLikelihood, LogZEstimate, log_partition, register_method

__all__ = ["LogLikelihood", "LogZEstimate", "log_partition", "register_method"]
