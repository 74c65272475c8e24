"""The AWS calls an identity's code can make, read from the code itself (ast), so the template's
grants can be checked against them (tests/unit/test_iam_from_code.py).

From an entry module (a Lambda handler, a DAG file, the SageMaker job's inference code) the scan
follows what the code can reach: the modules it imports (ours: pipeline, lambdas, dags,
sagemaker_jobs), and inside them the functions and methods it names (a method by its name, in
any class of those modules: an over-approximation, never a miss). In each reached function it
finds the calls `receiver.<operation>(...)` whose name is an operation of a service the code makes
clients of, and decides the receiver's service from how it was made:

- `self.client` of an `aws.Adapter` subclass: its `service`;
- a name or attribute assigned `aws.client(settings, "svc")`, `<session>.client("svc")`, or
  `<adapter>.client`, or returned by a property that makes one;
- a parameter named after a service (`s3`, `sqs`, `dynamodb`, `sagemaker`).

A receiver that is one of our own objects is not a client (its method is scanned by itself). A
call whose name is an operation and whose receiver is none of these raises `UnknownCallSite`:
the scan never guesses. Libraries that call AWS with a client or session of ours (powertools'
idempotency, the Airflow amazon provider) are not read: `LIBRARY_CALLS` lists what each imported
module calls, and importing an AWS-calling module not listed raises `UnknownCallSite` as well.
What a service does as the caller on its behalf is written in `IMPLIED_ACTIONS` (an rds-data
call reads the cluster's secret: secretsmanager:GetSecretValue).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

REPO_ROOT = Path(__file__).resolve().parents[1]
OUR_PACKAGES = ("pipeline", "lambdas", "dags", "sagemaker_jobs")

# Parameters that hold a client by convention (a function handed a client by its caller).
SERVICE_PARAMETERS = {
    "s3": "s3",
    "sqs": "sqs",
    "dynamodb": "dynamodb",
    "sagemaker": "sagemaker",
    "rds_data": "rds-data",
}

# Client methods that are not operations but make one.
TRANSFER_METHODS = {
    "upload_file": "PutObject",
    "upload_fileobj": "PutObject",
    "download_file": "GetObject",
    "download_fileobj": "GetObject",
}

# API operations whose IAM action has another name (S3's and SQS's batch calls are authorised
# by the single call's action; HEAD and LIST by the read and list actions).
ACTION_OF_OPERATION = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "GetBucketNotificationConfiguration"): "s3:GetBucketNotification",
    ("s3", "PutBucketNotificationConfiguration"): "s3:PutBucketNotification",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}

# Actions a service takes with the caller's identity on the caller's behalf, beyond the call's
# own: the RDS Data API reads the statement's secretArn (the cluster's credentials) from Secrets
# Manager as the caller, so every rds-data call also needs secretsmanager:GetSecretValue
# (Aurora user guide, "Authorizing access to the Amazon RDS Data API").
IMPLIED_ACTIONS: dict[str, tuple[str, ...]] = {
    "rds-data": ("secretsmanager:GetSecretValue",),
}

# What third-party modules our code imports call on AWS with the caller's identity, read from
# their sources at the versions constraints.txt pins. A module under AWS_LIBRARIES that is not
# listed fails the scan.
AWS_LIBRARIES = (
    "aws_lambda_powertools.utilities.idempotency",
    "airflow.providers.amazon",
    "airflow.providers.common.messaging",
    "sagemaker_core",
    "sagemaker",
)
LIBRARY_CALLS: dict[str, tuple[str, ...]] = {
    # DynamoDBPersistenceLayer: _get_record, _put_record, _update_record, _delete_record
    "aws_lambda_powertools.utilities.idempotency": (
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ),
    "aws_lambda_powertools.utilities.idempotency.exceptions": (),
    # SageMakerTransformOperator(action_if_*_exists="timestamp", deferrable): the describe calls
    # that find a free name, CreateModel, CreateTransformJob, the trigger's DescribeTransformJob
    # waiter, the result's DescribeModel; it passes the config's ExecutionRoleArn (an ARN: no
    # iam:GetRole) to SageMaker.
    "airflow.providers.amazon.aws.operators.sagemaker": (
        "sagemaker:DescribeModel",
        "sagemaker:CreateModel",
        "sagemaker:DescribeTransformJob",
        "sagemaker:CreateTransformJob",
        "iam:PassRole",
    ),
    # image_uris.retrieve reads the image tables it ships (region and version given): no call
    "sagemaker.core": (),
    # AwsBaseHook.get_session: the connection's credentials; no call of the policy's identity
    "airflow.providers.amazon.aws.hooks.base_aws": (),
    # MessageQueueTrigger(scheme="sqs") -> SqsSensorTrigger: ReceiveMessage, then
    # DeleteMessageBatch of what it received (delete_message_on_reception)
    "airflow.providers.common.messaging.triggers.msg_queue": (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
    ),
}


class UnknownCallSite(Exception):
    """A call the scan cannot attribute to a service, or an AWS library it does not know."""


@dataclass(frozen=True)
class AwsCall:
    where: str  # "module:line", or the library module
    action: str  # "service:Action" as IAM names it


@cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


@cache
def _operations(service: str) -> dict[str, str]:
    """snake_case method name -> OperationName of a boto3 client of `service`."""
    return {xform_name(name): name for name in _service_model(service).operation_names}


def iam_action(service: str, operation: str) -> str:
    """The IAM action that authorises `operation` of the boto3 service `service` (its signing
    name is IAM's prefix: sagemaker-runtime's InvokeEndpoint is sagemaker:InvokeEndpoint)."""
    prefix = _service_model(service).signing_name
    return ACTION_OF_OPERATION.get((prefix, operation), f"{prefix}:{operation}")


# ---------------------------------------------------------------- modules and definitions


@dataclass
class _Module:
    name: str
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    defs: dict[str, ast.AST] = field(default_factory=dict)  # top-level functions and classes
    library_imports: set[str] = field(default_factory=set)


def _path_of(module: str, root: Path) -> Path | None:
    path = root.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _load(module: str, root: Path) -> _Module | None:
    path = _path_of(module, root)
    if path is None:
        return None
    loaded = _Module(module, ast.parse(path.read_text(), str(path)))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(loaded.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                loaded.imports[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                loaded.library_imports.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            loaded.library_imports.add(base)
            for alias in node.names:
                loaded.imports.setdefault(alias.asname or alias.name, f"{base}.{alias.name}")
    for node in loaded.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            loaded.defs[node.name] = node
    return loaded


def _ours(name: str) -> bool:
    return name.split(".")[0] in OUR_PACKAGES


class _Program:
    """Our modules reachable by imports from the entry modules, with their definitions."""

    def __init__(self, entries: Iterable[str], root: Path) -> None:
        self.root = root
        self.modules: dict[str, _Module] = {}
        todo = list(entries)
        while todo:
            name = todo.pop()
            if name in self.modules:
                continue
            module = _load(name, root)
            if module is None:
                raise UnknownCallSite(f"no module {name} under {root}")
            self.modules[name] = module
            for target in [*module.imports.values(), *module.library_imports]:
                parts = target.split(".")
                for end in range(1, len(parts) + 1):
                    candidate = ".".join(parts[:end])
                    known = candidate in self.modules
                    if _ours(candidate) and not known and _path_of(candidate, root) is not None:
                        todo.append(candidate)
        # classes: qualified name -> (module, node); methods by name
        self.classes: dict[str, tuple[_Module, ast.ClassDef]] = {}
        self.methods: dict[str, list[tuple[_Module, ast.ClassDef, ast.AST]]] = {}
        for module in self.modules.values():
            for node in module.defs.values():
                if isinstance(node, ast.ClassDef):
                    self.classes[f"{module.name}.{node.name}"] = (module, node)
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                            self.methods.setdefault(item.name, []).append((module, node, item))

    def lookup(self, module: _Module, name: str) -> tuple[str, _Module | None, ast.AST | None]:
        """What `name` means in `module`: (qualified name, defining module, node or None)."""
        if name in module.defs:
            return f"{module.name}.{name}", module, module.defs[name]
        qualified = module.imports.get(name, name)
        for _ in range(5):  # re-exports
            if qualified in self.modules:
                return qualified, self.modules[qualified], None
            owner, _, attr = qualified.rpartition(".")
            source = self.modules.get(owner)
            if source is None:
                return qualified, None, None
            if attr in source.defs:
                return qualified, source, source.defs[attr]
            if attr not in source.imports:
                return qualified, None, None
            qualified = source.imports[attr]
        return qualified, None, None

    def bases(self, module: _Module, cls: ast.ClassDef) -> Iterator[tuple[_Module, ast.ClassDef]]:
        """The class and its bases among our classes, nearest first."""
        yield module, cls
        for base in cls.bases:
            if isinstance(base, ast.Name | ast.Attribute):
                qualified = _qualified(self, module, base)
                if qualified in self.classes:
                    yield from self.bases(*self.classes[qualified])


def _qualified(program: _Program, module: _Module, node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return program.lookup(module, node.id)[0]
    if isinstance(node, ast.Attribute):
        return f"{_qualified(program, module, node.value)}.{node.attr}"
    return ""


# ---------------------------------------------------------------- what a receiver is


@dataclass(frozen=True)
class _Client:
    service: str


@dataclass(frozen=True)
class _Instance:
    cls: str  # qualified name of one of our classes


_Kind = _Client | _Instance | None


@dataclass
class _Scope:
    module: _Module
    cls: tuple[_Module, ast.ClassDef] | None
    function: ast.AST  # the reached function (or module) whose names are looked up


class _Scanner:
    def __init__(self, program: _Program) -> None:
        self.program = program
        self._resolving: set[tuple[int, str]] = set()

    def service_of_class(self, qualified: str) -> str | None:
        module, cls = self.program.classes[qualified]
        for _, base in self.program.bases(module, cls):
            for item in base.body:
                if (
                    isinstance(item, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "service" for t in item.targets)
                    and isinstance(item.value, ast.Constant)
                    and item.value.value
                ):
                    return str(item.value.value)
        return None

    def kind(self, node: ast.expr, scope: _Scope) -> _Kind:
        if isinstance(node, ast.BoolOp):
            return next((k for v in node.values if (k := self.kind(v, scope)) is not None), None)
        if isinstance(node, ast.IfExp):
            return self.kind(node.body, scope) or self.kind(node.orelse, scope)
        if isinstance(node, ast.Call):
            return self._call_kind(node, scope)
        if isinstance(node, ast.Name):
            if node.id == "self" and scope.cls is not None:
                module, cls = scope.cls
                return _Instance(f"{module.name}.{cls.name}")
            return self._name_kind(node.id, scope)
        if isinstance(node, ast.Attribute):
            owner = self.kind(node.value, scope)
            if isinstance(owner, _Instance):
                return self.member_kind(owner.cls, node.attr)
        return None

    def _call_kind(self, node: ast.Call, scope: _Scope) -> _Kind:
        func = node.func
        qualified = _qualified(self.program, scope.module, func)
        if qualified == "pipeline.aws.client":
            service = node.args[1] if len(node.args) > 1 else None
            if isinstance(service, ast.Constant) and isinstance(service.value, str):
                return _Client(service.value)
            if isinstance(service, ast.Attribute) and service.attr == "service":
                owner = self.kind(service.value, scope)
                if isinstance(owner, _Instance):
                    found = self.service_of_class(owner.cls)
                    return _Client(found) if found else None
            raise UnknownCallSite(f"{scope.module.name}:{node.lineno}: aws.client of what?")
        if isinstance(func, ast.Attribute) and func.attr == "client" and node.args:
            first = node.args[0]  # boto3.client("s3"), session.client("s3")
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                return _Client(first.value)
        if qualified in self.program.classes:
            return _Instance(qualified)
        return None

    def _name_kind(self, name: str, scope: _Scope) -> _Kind:
        key = (id(scope.function), name)
        if key in self._resolving:  # `x = x or ...`
            return None
        self._resolving.add(key)
        try:
            return self._assigned_kind(name, scope)
        finally:
            self._resolving.discard(key)

    def _assigned_kind(self, name: str, scope: _Scope) -> _Kind:
        kinds = [self.kind(v, scope) for v in _assigned(scope.function, name)]
        for arg in _parameters(scope.function):
            if arg.arg == name:
                if arg.annotation is not None:
                    kinds.append(self._annotation_kind(arg.annotation, scope.module))
                if name in SERVICE_PARAMETERS:
                    kinds.append(_Client(SERVICE_PARAMETERS[name]))
        return _one(kinds, f"{scope.module.name}: {name}")

    def _annotation_kind(self, annotation: ast.expr, module: _Module) -> _Kind:
        for node in ast.walk(annotation):
            if isinstance(node, ast.Name | ast.Attribute):
                qualified = _qualified(self.program, module, node)
                if qualified in self.program.classes:
                    return _Instance(qualified)
        return None

    def member_kind(self, cls: str, attr: str) -> _Kind:
        key = (id(self.program.classes[cls][1]), attr)
        if key in self._resolving:
            return None
        self._resolving.add(key)
        try:
            return self._member_kind(cls, attr)
        finally:
            self._resolving.discard(key)

    def _member_kind(self, cls: str, attr: str) -> _Kind:
        module, node = self.program.classes[cls]
        kinds: list[_Kind] = []
        for base_module, base in self.program.bases(module, node):
            for item in base.body:
                if isinstance(item, ast.AnnAssign) and ast.unparse(item.target) == attr:
                    kinds.append(self._annotation_kind(item.annotation, base_module))  # a field
                if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                scope = _Scope(base_module, (base_module, base), item)
                if item.name == attr and _is_property(item):
                    kinds += [self.kind(r, scope) for r in _returned(item)]
                for value in _assigned(item, f"self.{attr}"):
                    kinds.append(self.kind(value, scope))
        if attr == "client" and not any(kinds):
            service = self.service_of_class(cls)
            return _Client(service) if service else None
        return _one(kinds, f"{cls}.{attr}")


def _one(kinds: list[_Kind], what: str) -> _Kind:
    found = {k for k in kinds if k is not None}
    clients = {k for k in found if isinstance(k, _Client)}
    if len(clients) > 1:
        raise UnknownCallSite(f"{what} is a client of several services: {clients}")
    if clients:
        return clients.pop()
    return found.pop() if len(found) == 1 else None


def _is_property(node: ast.AST) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any(
        isinstance(d, ast.Name) and d.id in ("property", "cached_property") for d in decorators
    )


def _returned(node: ast.AST) -> list[ast.expr]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]


def _parameters(node: ast.AST) -> list[ast.arg]:
    found: list[ast.arg] = []
    for inner in ast.walk(node):
        if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = inner.args
            found += [*args.posonlyargs, *args.args, *args.kwonlyargs]
    return found


def _assigned(node: ast.AST, target: str) -> list[ast.expr]:
    """Every value assigned to `target` (a name, or `self.attr`) anywhere in `node`."""
    values: list[ast.expr] = []
    for inner in ast.walk(node):
        if isinstance(inner, ast.Assign):
            if any(ast.unparse(t) == target for t in inner.targets):
                values.append(inner.value)
        elif isinstance(inner, ast.AnnAssign | ast.NamedExpr) and inner.value is not None:
            if ast.unparse(inner.target) == target:
                values.append(inner.value)
        elif isinstance(inner, ast.withitem) and inner.optional_vars is not None:
            values += [inner.context_expr] if ast.unparse(inner.optional_vars) == target else []
    return values


# ---------------------------------------------------------------- reachability and calls


def aws_calls(entries: Iterable[str], root: Path = REPO_ROOT) -> list[AwsCall]:
    """Every AWS call the code of `entries` (module names; all of their code is reachable) can
    make, with where it is made. Raises UnknownCallSite where it cannot tell."""
    entries = list(entries)
    program = _Program(entries, root)
    scanner = _Scanner(program)
    services = _services(program)
    operation_names = {op: svc for svc in services for op in _operations(svc)}
    calls: list[AwsCall] = []
    seen: set[int] = set()
    todo = [scope for e in entries for scope in _everything_in(program.modules[e])]
    while todo:
        scope = todo.pop()
        if id(scope.function) in seen:
            continue
        seen.add(id(scope.function))
        calls += _calls_in(scanner, scope, operation_names)
        todo += _reached(scanner, scope)
    for module in program.modules.values():
        calls += _library_calls(module)
    return calls


def _everything_in(module: _Module) -> list[_Scope]:
    """An entry module's statements, functions and methods: all of it can run."""
    scopes = [_Scope(module, None, _Body(module.tree.body))]
    for node in module.defs.values():
        if isinstance(node, ast.ClassDef):
            scopes.append(_Scope(module, (module, node), node))
        else:
            scopes.append(_Scope(module, None, node))
    return scopes


def _services(program: _Program) -> set[str]:
    """The services our code makes clients of (their operation names are what the scan looks
    for), and those of the written lists."""
    found: set[str] = set()
    for module in program.modules.values():
        for node in ast.walk(module.tree):
            named: list[ast.expr] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                made_by_us = _qualified(program, module, node.func) == "pipeline.aws.client"
                if node.func.attr == "client":
                    named = node.args[1:2] if made_by_us else node.args[:1]
            elif isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "service":
                named = [node.value]
            found |= {str(n.value) for n in named if isinstance(n, ast.Constant) and n.value}
    return (found - {""}) | set(SERVICE_PARAMETERS.values())


def _calls_in(scanner: _Scanner, scope: _Scope, operation_names: dict[str, str]) -> list[AwsCall]:
    calls: list[AwsCall] = []
    for node in ast.walk(scope.function):
        if isinstance(node, ast.Call) and _is_getattr(node.func):
            calls += _dispatched_calls(scanner, scope, node)
            continue
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method = node.func.attr
        special = method in TRANSFER_METHODS or method in (
            "get_paginator",
            "generate_presigned_url",
        )
        if method not in operation_names and not special:
            continue
        where = f"{scope.module.name}:{node.lineno}"
        receiver = scanner.kind(node.func.value, scope)
        if isinstance(receiver, _Instance) or (receiver is None and special):
            continue  # one of our objects (its method is scanned where it is defined)
        if receiver is None:
            raise UnknownCallSite(
                f"{where}: {ast.unparse(node.func)}() is named like {operation_names[method]}'s "
                "operation, but its receiver is no client the scan can place"
            )
        service = receiver.service
        if method in TRANSFER_METHODS:
            operation = TRANSFER_METHODS[method]
        elif method in ("get_paginator", "generate_presigned_url"):
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                raise UnknownCallSite(f"{where}: {method} of a computed operation")
            operation = _operations(service)[first.value]
        elif method in _operations(service):
            operation = _operations(service)[method]
        else:
            raise UnknownCallSite(f"{where}: {method} is no operation of {service}")
        action = iam_action(service, operation)
        calls.append(AwsCall(where, action))
        implied = IMPLIED_ACTIONS.get(action.split(":", 1)[0], ())
        calls += [AwsCall(f"{where} (implied by {action})", extra) for extra in implied]
    return calls


def _is_getattr(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) >= 2
    )


def _with_implied(where: str, action: str) -> list[AwsCall]:
    implied = IMPLIED_ACTIONS.get(action.split(":", 1)[0], ())
    return [AwsCall(where, action)] + [
        AwsCall(f"{where} (implied by {action})", extra) for extra in implied
    ]


def _dispatched_calls(scanner: _Scanner, scope: _Scope, node: ast.Call) -> list[AwsCall]:
    """`getattr(client, operation)(...)`: a client's operation chosen by name. A constant name is
    that operation; a name that is a parameter of the enclosing function (a dispatcher such as
    `DataApi._call(operation, ...)`) is each constant its callers pass there, attributed to the
    caller's line. Anything else raises UnknownCallSite."""
    assert isinstance(node.func, ast.Call)
    target, name = node.func.args[:2]
    where = f"{scope.module.name}:{node.lineno}"
    receiver = scanner.kind(target, scope)
    if not isinstance(receiver, _Client):
        if isinstance(name, ast.Constant) and name.value in _operations_of_any(scanner):
            raise UnknownCallSite(f"{where}: getattr(..., {name.value!r}) of no known client")
        return []  # not a client: one of our objects, or no AWS call
    service = receiver.service
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return _with_implied(where, _dispatched_action(service, name.value, where))
    function, is_method = _enclosing_function(scope, node)
    parameter = ast.unparse(name)
    if not (
        isinstance(name, ast.Name)
        and isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        and parameter in {a.arg for a in _parameters(function)}
    ):
        raise UnknownCallSite(f"{where}: getattr of {service}'s client with a computed name")
    args = function.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if is_method:
        positional = positional[1:]  # self: the callers write self.<method>(operation, ...)
    calls: list[AwsCall] = []
    for module in scanner.program.modules.values():
        for site in ast.walk(module.tree):
            if not (isinstance(site, ast.Call) and _names(site.func, function.name)):
                continue
            site_where = f"{module.name}:{site.lineno}"
            passed = [k.value for k in site.keywords if k.arg == parameter]
            if parameter in positional and len(site.args) > positional.index(parameter):
                passed.append(site.args[positional.index(parameter)])
            if not (
                len(passed) == 1
                and isinstance(passed[0], ast.Constant)
                and isinstance(passed[0].value, str)
            ):
                raise UnknownCallSite(
                    f"{site_where}: {function.name}() dispatches {service}'s client by name "
                    f"(getattr at {where}), and this call's {parameter} is no constant"
                )
            action = _dispatched_action(service, passed[0].value, site_where)
            calls += _with_implied(f"{site_where} (through {where})", action)
    return calls


def _enclosing_function(scope: _Scope, node: ast.AST) -> tuple[ast.AST | None, bool]:
    """The innermost function of the scope around `node`, and whether it is a method (defined
    directly in a class body)."""
    root = scope.function
    found: tuple[ast.AST | None, bool] = (None, False)

    def visit(parent: ast.AST, in_class: bool) -> bool:
        nonlocal found
        for child in ast.iter_child_nodes(parent):
            if child is node:
                return True
            if visit(child, isinstance(child, ast.ClassDef)):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and found[0] is None:
                    found = (child, in_class)
                return True
        return False

    if isinstance(root, ast.FunctionDef | ast.AsyncFunctionDef):
        if not visit(root, False):
            return None, False
        method = scope.cls is not None and any(item is root for item in scope.cls[1].body)
        return found if found[0] is not None else (root, method)
    visit(root, isinstance(root, ast.ClassDef))
    return found


def _names(func: ast.expr, name: str) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == name) or (
        isinstance(func, ast.Name) and func.id == name
    )


def _dispatched_action(service: str, method: str, where: str) -> str:
    if method not in _operations(service):
        raise UnknownCallSite(f"{where}: {method} is no operation of {service}")
    return iam_action(service, _operations(service)[method])


def _operations_of_any(scanner: _Scanner) -> set[str]:
    return {op for svc in _services(scanner.program) for op in _operations(svc)}


def _reached(scanner: _Scanner, scope: _Scope) -> list[_Scope]:
    """The functions, methods and class bodies `scope` names."""
    program = scanner.program
    reached: list[_Scope] = []

    def add_class(module: _Module, cls: ast.ClassDef) -> None:
        for base_module, base in program.bases(module, cls):
            reached.append(_Scope(base_module, (base_module, base), _Body(base.body)))
            for item in base.body:
                name = getattr(item, "name", "")
                if not isinstance(item, ast.ClassDef) and (
                    name.startswith("__") or _is_property(item)
                ):
                    reached.append(_Scope(base_module, (base_module, base), item))

    for node in ast.walk(scope.function):
        if isinstance(node, ast.Name):
            _, module, found = program.lookup(scope.module, node.id)
            if module is not None and isinstance(found, ast.ClassDef):
                add_class(module, found)
            elif module is not None and found is not None:
                reached.append(_Scope(module, None, found))
        elif isinstance(node, ast.Attribute):
            qualified = _qualified(program, scope.module, node)
            owner, _, attr = qualified.rpartition(".")
            if owner in program.modules and attr in program.modules[owner].defs:
                found = program.modules[owner].defs[attr]
                if isinstance(found, ast.ClassDef):
                    add_class(program.modules[owner], found)
                else:
                    reached.append(_Scope(program.modules[owner], None, found))
            if not node.attr.startswith("__"):
                reached += _methods_named(scanner, scope, node)
    return reached


def _methods_named(scanner: _Scanner, scope: _Scope, node: ast.Attribute) -> list[_Scope]:
    """The methods `node` (`receiver.name`) may mean: those of the receiver's class, its bases
    and subclasses when the scan knows the receiver's class, else every method of that name."""
    program = scanner.program
    candidates = program.methods.get(node.attr, [])
    receiver = scanner.kind(node.value, scope) if candidates else None
    if isinstance(receiver, _Instance):
        family = {id(c) for _, c in program.bases(*program.classes[receiver.cls])}
        family |= {
            id(cls)
            for module, cls in program.classes.values()
            if any(
                base is program.classes[receiver.cls][1] for _, base in program.bases(module, cls)
            )
        }
        candidates = [c for c in candidates if id(c[1]) in family]
    return [_Scope(module, (module, cls), method) for module, cls, method in candidates]


class _Body(ast.AST):
    """Statements without the functions, methods and classes among them: a module's or a
    class's own (its attributes, a dataclass's fields)."""

    _fields = ("body",)

    def __init__(self, body: list[ast.stmt]) -> None:
        super().__init__()
        self.body = [s for s in body if not isinstance(s, _DEFINITIONS)]


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _library_calls(module: _Module) -> list[AwsCall]:
    calls: list[AwsCall] = []
    for imported in sorted(module.library_imports):
        if not any(imported == p or imported.startswith(p + ".") for p in AWS_LIBRARIES):
            continue
        if imported not in LIBRARY_CALLS:
            raise UnknownCallSite(
                f"{module.name} imports {imported}, which calls AWS: list what it calls in "
                "tests/iam_calls.py LIBRARY_CALLS"
            )
        calls += [AwsCall(f"{module.name} -> {imported}", a) for a in LIBRARY_CALLS[imported]]
    return calls
