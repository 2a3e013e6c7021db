"""disync-operator: a Kubernetes operator for Alibaba Cloud DataWorks real-time synchronization."""

__version__ = "0.1.0"
