"""The WSUS server-to-server protocol (MS-WSUSSS): SOAP 1.1 over HTTP, spoken by Microsoft Update and every WSUS
server. ``soap`` reads and writes its envelopes and faults, ``anchors`` and ``cookies`` hold the state it passes back
and forth, ``languages`` maps its language IDs, ``server`` answers WSUS downstream servers from upmirror's store."""
