//! `wasi:filesystem/preopens`, served from the job's grants rather than
//! wasmtime-wasi's own list, so that a file can be granted alone: its
//! preopen's descriptor is the file itself.

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host;

use super::State;

impl Host for State {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let mut out = Vec::with_capacity(self.preopens.len());
        for (d, name) in &self.preopens {
            out.push((self.table.push(d.clone())?, name.clone()));
        }
        Ok(out)
    }
}
