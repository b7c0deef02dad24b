"""OVF/OVA support of ediv: read, verify, validate and translate virtual appliances.

Modules (flat): ``envelope`` (the model), ``reader`` (descriptor -> model, any dialect),
``xmlload`` (hardened parse + quirk repairs), ``namespaces``, ``units``, ``package``
(OVA/folder access, member checks), ``manifest`` + ``verify`` (digests), ``signature``
(.cert), ``schema`` (advisory XSD), ``inspect`` (``ediv ovf inspect``), ``translate``
(-> VNUML VMs). Entry points: ``ediv.ovf.inspect.inspect_package``,
``ediv.ovf.reader.read_descriptor``, ``ediv.ovf.translate.to_vms``.
"""
