"""Partition functions: exact enumeration, quadrature, AIS, variational bounds."""

from ebm_ppl.partition.base import LogZEstimate, log_partition, register_method

# Built-in methods ("module:function"), imported on first use.
register_method("exact", "ebm_ppl.partition.exact:log_partition_exact")
register_method("quadrature", "ebm_ppl.partition.quadrature:log_partition_quadrature")
register_method("ais", "ebm_ppl.partition.ais:log_partition_ais")
register_method("elbo", "ebm_ppl.partition.variational:log_partition_elbo")
register_method("importance", "ebm_ppl.partition.variational:log_partition_importance")

__all__ = ["LogZEstimate", "log_partition", "register_method"]
