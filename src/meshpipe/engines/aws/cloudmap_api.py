"""Cloud Map, for tearing down a Service Connect environment.

ECS registers a Cloud Map service (and one instance per task) in the environment's HTTP namespace for
every Service Connect service it runs. CloudFormation does not own them, so they outlive the service
stacks, and a namespace that still holds a service cannot be deleted: the environment stack's deletion
would fail. This module removes them: each instance is deregistered (an asynchronous Cloud Map operation,
waited for), then the service is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshpipe.clock import Clock
from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.errors import error_code, is_not_found
from meshpipe.errors import NotFoundError, OperationError

# Cloud Map reports an operation's progress as one of these; the last two are final.
OPERATION_DONE = "SUCCESS"
OPERATION_FAILED = "FAIL"
# DeleteService answers this while the service still has instances (their deregistration still runs).
IN_USE = "ResourceInUse"


@dataclass(frozen=True)
class CloudMapService:
    id: str
    name: str


class CloudMapApi:
    def __init__(self, calls: AwsCalls, *, clock: Clock, poll_interval: float = 5.0,
                 timeout: float = 600.0) -> None:
        self.calls = calls
        self.clock = clock
        self.poll_interval = poll_interval
        self.timeout = timeout

    def services(self, namespace_id: str) -> list[CloudMapService]:
        """The services registered in the namespace (ListServices filtered by NAMESPACE_ID)."""
        found = self.calls.pages("servicediscovery", "list_services", "Services",
                                 Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}])
        return sorted((CloudMapService(id=str(s["Id"]), name=str(s.get("Name", s["Id"]))) for s in found),
                      key=lambda s: s.name)

    def instance_ids(self, service_id: str) -> list[str]:
        return [str(i["Id"]) for i in self.calls.pages("servicediscovery", "list_instances", "Instances",
                                                       ServiceId=service_id)]

    def remove(self, service: CloudMapService) -> int:
        """Deregister every instance of the service, wait for that, then delete it. Returns the number of
        instances deregistered. A service or instance already gone counts as removed."""
        deadline = self.clock.now() + self.timeout
        deregistered = 0
        while True:
            try:
                instances = self.instance_ids(service.id)
            except NotFoundError:  # deleted meanwhile
                return deregistered
            operations = []
            for instance in instances:
                answer = self.calls.call_or_none("servicediscovery", "deregister_instance", when=is_not_found,
                                                 ServiceId=service.id, InstanceId=instance)
                if answer and answer.get("OperationId"):
                    operations.append(str(answer["OperationId"]))
            deregistered += len(instances)
            for operation in operations:
                self._wait_for(operation, service, deadline)
            if self._delete(service.id):
                return deregistered
            # Still in use: an instance registered meanwhile (a task still stopping). Deregister it as well
            # and try again, until the deadline.
            self._check_deadline(deadline, service, "it still has instances")
            self.clock.sleep(self.poll_interval)

    def _delete(self, service_id: str) -> bool:
        """Delete the service; False while Cloud Map refuses because it still has instances."""
        in_use: list[str] = []

        def refused(exc: BaseException) -> bool:
            if error_code(exc) == IN_USE:
                in_use.append(IN_USE)
                return True
            return is_not_found(exc)

        self.calls.call_or_none("servicediscovery", "delete_service", when=refused, Id=service_id)
        return not in_use

    def _wait_for(self, operation_id: str, service: CloudMapService, deadline: float) -> None:
        while True:
            page = self.calls("servicediscovery", "get_operation", OperationId=operation_id)
            status = str(page.get("Operation", {}).get("Status", ""))
            if status == OPERATION_DONE:
                return
            if status == OPERATION_FAILED:
                reason = page.get("Operation", {}).get("ErrorMessage") or "no reason given"
                raise OperationError(f"Cloud Map could not deregister an instance of service {service.name} "
                                     f"({service.id}): {reason}",
                                     hint="run the command again; if it fails again, deregister the instance in "
                                          "the Cloud Map console and retry")
            self._check_deadline(deadline, service, f"operation {operation_id} is still {status or 'pending'}")
            self.clock.sleep(self.poll_interval)

    def _check_deadline(self, deadline: float, service: CloudMapService, state: str) -> None:
        if self.clock.now() >= deadline:
            raise OperationError(f"gave up waiting for Cloud Map service {service.name} ({service.id}) after "
                                 f"{self.timeout:.0f} s: {state}",
                                 hint="Cloud Map carries on by itself: run the command again in a few minutes")
